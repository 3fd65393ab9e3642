import subprocess
import sys
import zipfile

from vs_sonar_dataset.build.card import TEMPLATE
from vs_sonar_dataset.core.envs import REPO_ROOT


def test_a_built_wheel_carries_the_card_template_and_the_gsm8k_sample(tmp_path):
    """Outside a checkout, build renders the card and the demo reads GSM8K from the installed package."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("vs_sonar-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("vs_sonar_dataset/dataset_card.md") == (REPO_ROOT / "dataset_card.md").read_bytes()
        assert z.read("vs_sonar_dataset/data/gsm8k/train.jsonl").count(b"\n") == 1000
        assert b"MIT License" in z.read("vs_sonar_dataset/data/gsm8k/LICENSE")
    assert TEMPLATE.read_bytes() == (REPO_ROOT / "dataset_card.md").read_bytes()
