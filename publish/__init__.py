"""`python -m publish`: build + verify a release, and push it to the Hugging Face Hub in one atomic commit."""
