"""The sample inputs the shipped workflows open with, copied into ComfyUI's input folder.

ComfyUI's LoadImage/LoadVideo read from the input folder, so a workflow can only run out of the
box if its files are there. They are copied once, under names no user file is likely to have,
and never overwrite anything.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("comfyui-fomm")

SAMPLES = Path(__file__).resolve().parent.parent / "workflows" / "inputs"


def install_samples() -> None:
    """Copy the shipped workflows' inputs into ComfyUI's input folder, once, never overwriting."""
    import folder_paths

    target = Path(folder_paths.get_input_directory())
    for sample in sorted(SAMPLES.glob("fomm_*")):
        destination = target / sample.name
        if destination.exists():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample, destination)
        except OSError as exc:  # a read-only input folder must not stop the pack from loading
            log.warning("FOMM: could not copy sample input %s to %s: %s", sample.name, target, exc)
