"""The GPU build: requirements-gpu.txt pins requirements.txt's TensorFlow; `make ... GPU=1` installs it alone."""

import re
import subprocess

from tests.conftest import ROOT

TENSORFLOW_CPU = re.compile(r"^tensorflow-cpu==(\S+)$", re.MULTILINE)


def planned(*args: str) -> list[str]:
    """The commands `make -n` would run for `args`, against a .venv that does not exist."""
    done = subprocess.run(["make", "-n", *args, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return done.stdout.splitlines()


def test_the_gpu_requirements_pin_the_cpu_build_version_with_cuda():
    cpu = TENSORFLOW_CPU.findall((ROOT / "requirements.txt").read_text())
    gpu = [line for line in (ROOT / "requirements-gpu.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(cpu) == 1 and gpu == [f"tensorflow[and-cuda]=={cpu[0]}"]


def test_gpu_1_installs_every_other_requirement_and_not_tensorflow_cpu():
    install = next(line for line in planned("repro", "GPU=1") if "pip install --quiet -r" in line)
    assert install.endswith("-r /dev/stdin -r requirements-gpu.txt")
    kept = subprocess.run(install.split("|")[0], shell=True, cwd=ROOT, capture_output=True, text=True, check=True)
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert kept.stdout.splitlines() == [line for line in lines if not TENSORFLOW_CPU.match(line)]
    assert len(kept.stdout.splitlines()) == len(lines) - 1 and "tensorflow-cpu" not in kept.stdout


def test_each_variant_has_its_own_stamp_and_a_switch_starts_a_fresh_venv():
    for target in ("repro", "test", "serve"):
        cpu, gpu = planned(target), planned(target, "GPU=1")
        assert "touch /nonexistent/venv/bin/.installed" in cpu and "requirements-gpu.txt" not in "\n".join(cpu)
        assert "touch /nonexistent/venv/bin/.installed-gpu" in gpu
        assert "if [ -e /nonexistent/venv/bin/.installed-gpu ]; then rm -rf /nonexistent/venv; fi" in cpu
        assert "if [ -e /nonexistent/venv/bin/.installed ]; then rm -rf /nonexistent/venv; fi" in gpu
