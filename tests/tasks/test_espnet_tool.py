"""``python -m espnet_supernet.bin.espnet_tool <espnet2.bin module> ...``: ESPnet's tool,
run as ``python -m`` runs it, with g2p_en / tacotron_cleaner deferred (no nltk download
errors, no SyntaxWarning), in spawned processes too."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TOOL = [sys.executable, "-m", "espnet_supernet.bin.espnet_tool"]
NOISE = ("[nltk_data]", "SyntaxWarning", "InstrumentationWarning", "Traceback")
ADD_SYMBOLS = ("--add_symbol", "<blank>:0", "--add_symbol", "<unk>:1",
               "--add_symbol", "<sos/eos>:-1")

# A stand-in tool: reports what ESPnet's own code would find loaded, in its process and
# in a process it spawns (as ESPnet's multi-GPU training does).
PROBE = textwrap.dedent("""
    import multiprocessing
    import sys


    def state(tag):
        from espnet_supernet.espnet_import import DeferredModule
        deferred = all(isinstance(sys.modules.get(m), DeferredModule)
                       for m in ("g2p_en", "tacotron_cleaner.cleaners"))
        loaded = [m for m in ("nltk", "inflect") if m in sys.modules]
        print(tag, "deferred" if deferred else "loaded", loaded, flush=True)


    def main():
        print("argv", sys.argv[0] == __file__, sys.argv[1:], flush=True)
        state("parent")
        child = multiprocessing.get_context("spawn").Process(target=state, args=("child",))
        child.start()
        child.join()
        sys.exit(child.exitcode)
""")


def _run(args, cwd, env=None):
    return subprocess.run([*TOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def test_tokenize_text_as_python_m_without_the_noise(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 HELLO WORLD\nu2 GOOD BYE\n")
    args = ["--token_type", "char", "--field", "2-", "--input", str(text),
            "--write_vocabulary", "true", *ADD_SYMBOLS]
    out = _run(["espnet2.bin.tokenize_text", *args, "--output", "tool.txt"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert not [n for n in NOISE if n in out.stderr + out.stdout], out.stderr
    assert "espnet2/bin/tokenize_text.py --token_type char" in out.stderr  # logged command
    direct = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.tokenize_text", *args, "--output", "direct.txt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert direct.returncode == 0, direct.stderr
    tokens = (tmp_path / "tool.txt").read_text()
    assert tokens == (tmp_path / "direct.txt").read_text()
    assert tokens.split()[:3] == ["<blank>", "<unk>", "O"] and tokens.split()[-1] == "<sos/eos>"


def test_deferred_in_the_tool_and_in_the_processes_it_spawns(tmp_path):
    (tmp_path / "probe_tool.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = _run(["probe_tool", "--flag", "x"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "argv True ['--flag', 'x']" in lines  # its own file as argv[0], then its args
    assert "parent deferred []" in lines
    assert "child deferred []" in lines, out.stdout + out.stderr


def test_help_and_errors():
    own = _run(["--help"], Path.cwd())
    assert own.returncode == 0 and "espnet2.bin.tokenize_text" in own.stdout
    assert "g2p_en" in own.stdout  # says what it does differently from python -m
    tools = _run(["espnet2.bin.tokenize_text", "--help"], Path.cwd())
    assert tools.returncode == 0 and "usage: tokenize_text.py" in tools.stdout
    assert "--token_type" in tools.stdout
    for bad in ("espnet2.bin.no_such_tool", "espnet2.bin", "no_such_package.tool"):
        out = _run([bad, "--help"], Path.cwd())
        assert out.returncode == 2 and f"no module '{bad}' to run" in out.stderr, out.stderr
    assert _run([], Path.cwd()).returncode == 2
