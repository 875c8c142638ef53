"""requirements/lock.txt pins every package exactly, satisfies the declared ranges, and is what is installed."""

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def _lock() -> dict[str, str]:
    pins = {}
    for line in _lines(ROOT / "requirements" / "lock.txt"):
        name, sep, version = line.partition("==")
        assert sep and version and " " not in line and "@" not in line, f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = version
    return pins


def test_lock_pins_every_declared_requirement_within_its_range():
    lock = _lock()
    for file in ("base.txt", "dev.txt"):
        for line in _lines(ROOT / "requirements" / file):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            if name == "torch":  # installed on its own by the Makefile, so a CPU build is never replaced
                continue
            assert name in lock, f"{requirement.name} ({file}) is not in requirements/lock.txt"
            assert requirement.specifier.contains(lock[name], prereleases=True), \
                f"lock has {requirement.name}=={lock[name]}, outside {file}'s {requirement.specifier}"


def test_the_installed_environment_is_the_lock():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in _lock().items()
             if installed.get(name) != version}
    assert not wrong, f"installed versions differ from requirements/lock.txt (locked, installed): {wrong}"


def test_torch_is_the_pinned_version():
    assert metadata.version("torch").split("+")[0] == "2.13.0"
