"""ComfyUI entry point.

ComfyUI imports this folder (cloned into ``ComfyUI/custom_nodes/``) as a node pack. The
nodes live in ``nodes/``; the computation they call lives in ``fomm_model/``.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
