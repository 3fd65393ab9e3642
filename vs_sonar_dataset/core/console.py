"""What `vs-sonar run` shows of a stage: its progress bar (with rates), its error line and its closing line.

A stage's whole output (vLLM's and fairseq2's start-up logs, every log line) goes to logs/{stage}.log; the
terminal gets one line per stage that updates in place, then the stage's last line. `--verbose` shows all.
"""

import re
import shutil

# our own tqdm bars ("generate:  45%|████  | 4500/10000 [01:23<01:40, 54.2 accepted/s]"), not the libraries'
PROGRESS = re.compile(r"^(generate|embed|dedup|build|verify \S+|model-check)\b.*?\[\d+:\d\d[^\]]*\]")
ERROR = re.compile(r": (internal )?error: ")
# log lines: ours ("12:00:01 INFO ..."), vLLM's ("INFO 12-01 12:00:01 [...]"), Ray-style prefixes, warnings
LOG = re.compile(r"^(\d\d:\d\d:\d\d [A-Z]+ |(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b|\(\w+ pid=\d+\)|\[|\S+\.py:\d+: )")


class StageConsole:
    """Feed it a stage's raw output; it writes the chosen parts to `out` (a text stream)."""

    def __init__(self, out, verbose: bool = False):
        self.out, self.verbose = out, verbose
        self.pending = ""
        self.last = ""  # the stage's last line that is neither progress nor a log line
        self.progress_shown = False

    def feed(self, chunk: bytes) -> None:
        if self.verbose:
            self.out.write(chunk.decode(errors="replace"))
            self.out.flush()
            return
        *segments, self.pending = re.split(r"[\r\n]", self.pending + chunk.decode(errors="replace"))
        for segment in segments:
            self._segment(segment.rstrip())

    def close(self) -> str:
        """Flush what is left; returns the stage's last line."""
        if self.pending:
            self._segment(self.pending.rstrip())
            self.pending = ""
        self._end_progress()
        return self.last

    def _segment(self, text: str) -> None:
        if not text:
            return
        progress = PROGRESS.match(text)
        if progress:  # up to the bar's closing bracket: a log line may follow it without a line break
            width = shutil.get_terminal_size((120, 24)).columns - 1
            self.out.write("\r" + progress.group(0)[:width].ljust(width))
            self.out.flush()
            self.progress_shown = True
        elif ERROR.search(text) or not LOG.match(text) and re.search(r"[^\W_]{2}", text):
            self.last = text  # the runner's own line carries it (an error too); a lone "}" is no closing line

    def line(self, text: str) -> None:
        """A whole line, after any progress bar on screen."""
        self._end_progress()
        self.out.write(text + "\n")
        self.out.flush()

    def _end_progress(self) -> None:
        if self.progress_shown:
            self.out.write("\n")
            self.progress_shown = False
