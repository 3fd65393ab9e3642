import io

from vs_sonar_dataset.core.console import StageConsole

# what a generate stage prints under `vs-sonar run`, in the pieces a pipe delivers
STAGE_OUTPUT = [
    b"INFO 12-01 23:33:00 [config.py:1234] Using max model len 4096\nINFO 12-01 23:33:01 [cpu.py:1]",
    b" Using CPU attention\n23:33:02 INFO vs_sonar.generate: resuming after 2 shards\n",
    b"\rgenerate:  10%|#         | 100/1000 [00:10<01:30, 10.0 accepted/s]00:13:06 WARNING vllm: Triton",
    b"\rgenerate: 100%|##########| 1000/1000 [01:40<00:00, 10.0 accepted/s]\n",
    b"Adding requests: 100%|##########| 128/128 [00:00<00:00, 999.0it/s]\n",
    b"generate: complete: 1000 of 1000 candidates in 8 shards\n",
]


def test_only_progress_reaches_the_terminal_and_the_last_line_is_kept():
    out = io.StringIO()
    console = StageConsole(out)
    for chunk in STAGE_OUTPUT:
        console.feed(chunk)
    assert console.close() == "generate: complete: 1000 of 1000 candidates in 8 shards"
    shown = out.getvalue()
    assert "INFO" not in shown and "Adding requests" not in shown and "resuming" not in shown
    assert "WARNING" not in shown  # a log line glued to a bar is cut off
    assert shown.count("\r") == 2 and "10.0 accepted/s" in shown and shown.endswith("\n")


def test_verbose_shows_everything_and_an_error_becomes_the_last_line():
    out = io.StringIO()
    console = StageConsole(out, verbose=True)
    for chunk in STAGE_OUTPUT:
        console.feed(chunk)
    assert out.getvalue() == b"".join(STAGE_OUTPUT).decode()
    quiet = StageConsole(io.StringIO())
    quiet.feed(b"23:00:00 INFO x: y\nvs-sonar generate: error: GSM8K: /x does not exist\n23:00:01 INFO z: done")
    assert quiet.close() == "vs-sonar generate: error: GSM8K: /x does not exist"
