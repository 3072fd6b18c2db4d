"""Blender UI: the importer, the "Run FOMM" operator, the sidebar panel and the preferences.

No ``from __future__ import annotations`` here: Blender reads the property annotations as
objects.
"""

import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .build import ImportFailed, ImportSettings, delete_replaced_cache, forget_cache, import_motion, remember_cache
from .motion_data import load_motion
from .motion_format import MotionFormatError
from .runner import FommJob, RunRequest, unused_motion_path

DEFORM_ITEMS = (
    ("RIG", "Rig", "Armature with one control per keypoint, keyed on every frame, weights from the model"),
    ("FLOW_CACHE", "Flow cache", "Bake the model's exact dense flow into a .pc2 mesh cache (needs a file written with --flow)"),
    ("NONE", "None", "A still plane (use it with the generated frames, which already move)"),
)
TEXTURE_ITEMS = (
    ("SOURCE", "Source image", "The source picture"),
    ("FRAMES", "Generated frames", "The frames the model generated, as an image sequence (needs --frames)"),
)
MOTION_ITEMS = (
    ("FILE", "As computed", "The motion as the file was computed (relative to the reference frame unless written with --absolute)"),
    ("ABSOLUTE", "Absolute", "The rig follows the driving keypoints as detected, not adapted to the source (the flow and frames stay as computed)"),
)


RIG_ONLY = ("motion", "pivots")  # options the Flow cache and a still plane do not use

PIVOT_ITEMS = (
    ("KEYPOINTS", "Keypoints", "Each bone rests at its keypoint, so the bones show where the model's keypoints are"),
    ("REGIONS", "Part centres", "Each bone rests at the centre of the part it moves (same motion; easier to pick and edit when keypoints sit together)"),
)


class FommPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python: StringProperty(
        name="Python",
        description="Python interpreter that has the fomm package (torch) installed, used by Run FOMM",
        subtype="FILE_PATH",
    )

    def draw(self, context):
        self.layout.prop(self, "python")


def preferences(context) -> FommPreferences:
    return context.preferences.addons[__package__].preferences


class ImportOptions:
    """Import options shared by the importer and Run FOMM."""

    deform: EnumProperty(name="Deform", items=DEFORM_ITEMS, default="RIG")
    texture: EnumProperty(name="Texture", items=TEXTURE_ITEMS, default="SOURCE")
    motion: EnumProperty(name="Motion", items=MOTION_ITEMS, default="FILE")
    pivots: EnumProperty(name="Bone Pivots", items=PIVOT_ITEMS, default="KEYPOINTS")
    height: FloatProperty(name="Height", description="Plane height in scene units", default=2.0, min=1e-3, subtype="DISTANCE")
    subdivisions: IntProperty(name="Subdivisions", description="Grid quads along the longer side", default=64, min=1, max=512)
    upright: BoolProperty(name="Upright", description="Stand the plane up facing -Y (front view); off: lie flat facing +Z", default=True)
    emission: BoolProperty(
        name="Unlit", default=True,
        description="Show the image's own colours (Emission) instead of a lit Principled BSDF; exactly with the scene's "
        "View Transform set to Standard (Blender's default, AgX, tones them down)",
    )
    frame_start: IntProperty(name="Start Frame", description="Scene frame of the first motion frame", default=1, min=0)
    set_scene: BoolProperty(
        name="Set Scene Timing", default=True,
        description="Set the scene's frame rate and frame range to the motion's; off: keep the scene's and retime the motion to its frame rate",
    )

    def settings(self) -> ImportSettings:
        return ImportSettings(
            deform=self.deform, texture=self.texture, motion=self.motion, pivots=self.pivots, height=self.height,
            subdivisions=self.subdivisions, upright=self.upright, emission=self.emission,
            frame_start=self.frame_start, set_scene=self.set_scene,
        )

    def draw_options(self, layout) -> None:
        for name in ("deform", "texture", "motion", "pivots", "height", "subdivisions", "upright", "emission", "frame_start", "set_scene"):
            row = layout.row()
            row.active = name not in RIG_ONLY or self.deform == "RIG"  # greyed: a cache plays the model's own flow
            row.prop(self, name)
            if name == "texture" and self.texture == "FRAMES" and self.deform != "NONE":
                layout.label(text="The frames already move: Deform None shows them as made", icon="INFO")


class IMPORT_SCENE_OT_fomm_motion(bpy.types.Operator, ImportHelper, ImportOptions):
    """Import a FOMM motion file: an image plane animated by the model's keypoints"""

    bl_idname = "import_scene.fomm_motion"
    bl_label = "Import FOMM Motion"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to import")
            return False
        return True

    def execute(self, context):
        if self.options.is_repeat:  # Adjust Last Operation: the previous run was just undone for good
            delete_replaced_cache()
        try:
            settings = self.settings()
            data = load_motion(bpy.path.abspath(self.filepath), frames=settings.texture == "FRAMES")
            result = import_motion(context, data, settings)
        except (MotionFormatError, ImportFailed) as exc:
            self.report({"ERROR"}, f"FOMM import failed: {exc}")
            return {"CANCELLED"}
        remember_cache(result.cache)
        if result.warning is not None:
            self.report({"WARNING"}, f"{result.summary}; {result.warning}")
        else:
            self.report({"INFO"}, result.summary)
        return {"FINISHED"}

    def draw(self, context):
        self.draw_options(self.layout)


def _checkpoint_argument(text: str) -> str:
    """The Checkpoint field for `fomm motion`: the embedded model when empty or "default" in
    any case, else the file (relative to the .blend when written with //)."""
    text = text.strip()
    return "default" if text.lower() in ("", "default") else bpy.path.abspath(text)


class FommRunSettings(bpy.types.PropertyGroup, ImportOptions):
    """What Run FOMM feeds `fomm motion` with (kept on the scene for the sidebar panel)."""

    source: StringProperty(name="Source Image", subtype="FILE_PATH")
    driving: StringProperty(name="Driving Video", subtype="FILE_PATH")
    checkpoint: StringProperty(
        name="Checkpoint", subtype="FILE_PATH", default="default",
        description='Checkpoint file (.pth.tar or .safetensors), or "default" for the model shipped with fomm',
    )
    output: StringProperty(
        name="Motion File", subtype="FILE_PATH",
        description="Where to write the motion file, rewritten by each run (default: a new file next to the .blend, "
        "or in the temporary folder)",
    )
    absolute: BoolProperty(
        name="Absolute Motion", default=False,
        description="Compute the motion (and the flow and frames) from the driving keypoints as they are, not relative "
        "to the first frame (fomm motion --absolute)",
    )
    max_frames: IntProperty(name="Max Frames", description="Use at most this many driving frames (0: all)", default=0, min=0)

    def request(self, python: str) -> RunRequest:
        return RunRequest(
            python=bpy.path.abspath(python),
            source=bpy.path.abspath(self.source),
            driving=bpy.path.abspath(self.driving),
            output=self.output_path(),
            checkpoint=_checkpoint_argument(self.checkpoint),
            absolute=self.absolute,
            flow=self.deform == "FLOW_CACHE",
            frames=self.texture == "FRAMES",
            max_frames=self.max_frames,
        )

    def output_path(self) -> str:
        """The Motion File, or a new file named for both inputs, numbered past the files of
        earlier runs: a run must not rewrite the texture or frames an earlier import plays."""
        if self.output:
            return bpy.path.abspath(self.output)
        folder = Path(bpy.data.filepath).parent if bpy.data.filepath else Path(tempfile.gettempdir()) / "fomm"
        return str(unused_motion_path(folder, f"{Path(self.source).stem or 'motion'}_{Path(self.driving).stem or 'driving'}"))


_jobs: dict[str, FommJob] = {}  # the running job, for the panel and the cancel button
TIMER_STEP = 0.2  # seconds between looks at the running job


def progress_label(job: FommJob) -> str:
    """Where ``job`` is, in words for the panel and the status bar."""
    return "cancelling..." if job.cancelled else f"{job.stage} {job.fraction:.0%}"


def status_text(job: FommJob) -> str:
    """What the status bar says while ``job`` runs."""
    return f"FOMM: {progress_label(job)}" + ("" if job.cancelled else " (Esc to cancel)")


def begin_progress(context: bpy.types.Context) -> bpy.types.Timer:
    """Start the timer that drives the modal loop. Progress shows in the status bar and the
    panel, not as the window manager's progress cursor: the run takes minutes, during which
    the artist keeps working and needs the pointer."""
    return context.window_manager.event_timer_add(TIMER_STEP, window=context.window)


def show_progress(context: bpy.types.Context, job: FommJob, workspace: bpy.types.WorkSpace) -> None:
    """Progress in the status bar of ``workspace``, the one the run started in (the text is
    the workspace's: written to whichever is active, it would stay behind in the first after a
    switch); the sidebar panel draws its own bar from the job, so 3D views are asked to redraw."""
    workspace.status_text_set(status_text(job))
    for area in context.screen.areas:
        if area.type == "VIEW_3D":
            area.tag_redraw()


def end_progress(context: bpy.types.Context, timer: bpy.types.Timer, workspace: bpy.types.WorkSpace) -> None:
    """Undo :func:`begin_progress` and clear the status bar of the run's workspace."""
    context.window_manager.event_timer_remove(timer)
    workspace.status_text_set(None)


def _notes_for(request: RunRequest, motion_file: str) -> list[str]:
    """What to tell the artist after a run about where its files went: a Motion File they set
    that is there already is rewritten (planes imported from it show the new run); without a
    saved .blend the files go to the temporary folder."""
    if motion_file and Path(request.output).exists():
        rewritten = "its texture and frames" if request.frames else "its texture"
        return [
            f"rewrote {Path(request.output).name} and {rewritten}: planes imported from it before now show this "
            "run's (leave Motion File empty for a new file each run)"
        ]
    if not motion_file and not bpy.data.filepath:
        return [
            f"the motion file is in the temporary folder {Path(request.output).parent}, which may be emptied: save "
            "the .blend before running to keep the files beside it"
        ]
    return []


class FOMM_OT_run(bpy.types.Operator):
    """Run FOMM on the source image and driving video in the background, then import the motion"""

    bl_idname = "fomm_motion.run"
    bl_label = "Run FOMM"

    _timer = None  # set while the modal loop runs

    @classmethod
    def poll(cls, context):
        if "job" in _jobs:
            cls.poll_message_set("FOMM is already running")
            return False
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to run FOMM")
            return False
        return True

    def execute(self, context):
        """Without a UI (background mode) run to the end; else hand over to the modal loop."""
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        if not bpy.app.background:
            return self._go_modal(context)
        job.wait()
        return self._finish(context)

    def invoke(self, context, event):
        return self.execute(context)

    def modal(self, context, event):
        """Timer ticks poll the job (it runs in another process, so Blender stays responsive);
        Esc asks it to stop (unless the animation is playing: then Esc stops the playback) and
        the ticks collect it. Other events pass through to Blender."""
        job = _jobs.get("job")
        if job is None:  # the add-on was reloaded under the running loop: nothing left to collect
            self._stop_progress(context)
            return {"CANCELLED"}
        if event.type == "ESC" and not context.screen.is_animation_playing:  # that Esc stops the playback
            job.cancel()
            show_progress(context, job, self._workspace)
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            if not job.running:
                return self._finish(context)
            show_progress(context, job, self._workspace)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender drops the modal loop (File > New/Open, closing the window): stop the job
        too, or the panel would show it running forever."""
        job = _jobs.pop("job", None)
        if job is not None:
            job.cancel()
        self._stop_progress(context)

    def _start(self, context) -> FommJob | None:
        settings = context.scene.fomm_run
        try:
            request = settings.request(preferences(context).python)
            self._notes = _notes_for(request, settings.output)
            _jobs["job"] = job = FommJob(request)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Run FOMM: {exc}")
            return None
        # The import options as they are now: changing the panel during the run changes the next run.
        self._options = {name: getattr(settings, name) for name in ImportOptions.__annotations__}
        self._workspace = context.workspace  # whose status bar shows the run, whichever is active later
        return job

    def _stop_progress(self, context) -> None:
        if self._timer is not None:
            end_progress(context, self._timer, self._workspace)
            self._timer = None

    def _go_modal(self, context):
        self._timer = begin_progress(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _finish(self, context):
        """The job has ended: clear the progress display, then import its motion file or report
        why there is none."""
        job = _jobs.pop("job")
        self._stop_progress(context)
        if not job.succeeded:
            self.report({"WARNING"} if job.cancelled else {"ERROR"}, f"Run FOMM: {job.error()}")
            return {"CANCELLED"}
        # What the artist should know besides: the command's warnings and where the files went, in
        # one report (the status bar shows only the last one).
        notes = "; ".join(job.warnings() + self._notes)
        if context.mode != "OBJECT":  # the artist went on editing while it ran: keep the motion for later
            self.report(
                {"WARNING"},
                f"Run FOMM: the motion is in {job.request.output}; import it with File > Import > FOMM Motion "
                "in Object Mode (it finished in another mode)" + (f"; {notes}" if notes else ""),
            )
            return {"CANCELLED"}
        try:
            # ("EXEC_DEFAULT", True): the import is one undo step, as when run from the menu.
            result = bpy.ops.import_scene.fomm_motion("EXEC_DEFAULT", True, filepath=job.request.output, **self._options)
        except RuntimeError as exc:  # the importer's own report, raised through bpy.ops as "Error: ..."
            self.report({"ERROR"}, str(exc).strip().removeprefix("Error:").strip())
            return {"CANCELLED"}
        if notes:
            self.report({"WARNING"}, f"Run FOMM: {notes}")
        return result


class FOMM_OT_cancel(bpy.types.Operator):
    """Stop the running FOMM job"""

    bl_idname = "fomm_motion.cancel"
    bl_label = "Cancel FOMM"

    @classmethod
    def poll(cls, context):
        return "job" in _jobs

    def execute(self, context):
        _jobs["job"].cancel()
        return {"FINISHED"}


class VIEW3D_PT_fomm_motion(bpy.types.Panel):
    bl_label = "FOMM Motion"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FOMM"

    def draw(self, context):
        layout = self.layout
        layout.operator(IMPORT_SCENE_OT_fomm_motion.bl_idname, text="Import Motion File...", icon="IMPORT")
        settings = context.scene.fomm_run
        box = layout.box()
        box.label(text="Run FOMM", icon="PLAY")
        for name in ("source", "driving", "checkpoint", "output", "absolute", "max_frames"):
            box.prop(settings, name)
        settings.draw_options(box)
        job = _jobs.get("job")
        if job is None:
            box.operator(FOMM_OT_run.bl_idname)
            if not preferences(context).python:
                box.label(text="Set the Python in the add-on preferences", icon="ERROR")
        else:
            box.progress(factor=job.fraction, text=progress_label(job))
            box.operator(FOMM_OT_cancel.bl_idname, icon="CANCEL")


def menu_import(self, context):
    self.layout.operator(IMPORT_SCENE_OT_fomm_motion.bl_idname, text="FOMM Motion (.json)")


CLASSES = (FommPreferences, IMPORT_SCENE_OT_fomm_motion, FommRunSettings, FOMM_OT_run, FOMM_OT_cancel, VIEW3D_PT_fomm_motion)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.fomm_run = PointerProperty(type=FommRunSettings)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    for handlers in (bpy.app.handlers.save_post, bpy.app.handlers.load_post):
        handlers.append(forget_cache)


def unregister() -> None:
    for handlers in (bpy.app.handlers.save_post, bpy.app.handlers.load_post):
        if forget_cache in handlers:
            handlers.remove(forget_cache)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    del bpy.types.Scene.fomm_run
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    for job in list(_jobs.values()):
        job.cancel()
    _jobs.clear()
