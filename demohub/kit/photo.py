"""An image input that hands the worker the uploaded file untouched.

`gr.Image(type="filepath")` still opens the file with PIL in the hub process,
so a corrupt file or a decompression bomb fails there with Gradio's generic
message. This input passes the path on; the worker decodes it with
`demohub.kit.images.load_image`, which explains what is wrong.

An image sent inline as a `data:` URL is refused: gr.Image would decode it with
PIL in the hub process (a 0.4 MB PNG can hold 430 MB of pixels). Uploads go
through Gradio's upload route, which writes them to a file under its size limit.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder


#: what view_api() and MCP say about the parameter (Gradio's own says a URL will do)
DESCRIPTION = ("an image file (JPEG, PNG or WebP), sent as a file: gradio_client.handle_file('photo.jpg'); "
               "web addresses and inline images are refused")
INLINE_REFUSED = ("Images sent inline (data: URLs) are not accepted; send the image as a file upload: "
                  "gradio_client.handle_file('photo.jpg').")


class PhotoUpload(gr.Image):
    def __init__(self, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("sources", ["upload", "clipboard"])
        super().__init__(**kwargs)

    # Gradio serialises a component from its constructor's signature: show it gr.Image's.
    __init__.__signature__ = inspect.signature(gr.Image.__init__)

    def get_block_name(self) -> str:
        return "image"  # render with Gradio's own Image frontend

    def api_info(self) -> dict:
        info = copy.deepcopy(super().api_info())
        info["additional_description"] = DESCRIPTION
        info["properties"]["url"]["description"] = "set by gradio_client when it uploads the file; leave it out"
        info["properties"]["path"]["description"] = "the file to send: handle_file('photo.jpg') fills this in"
        return info

    def example_payload(self) -> dict:
        return {"path": "photo.jpg", "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.jpg"}

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.strip()[:5].lower() == "data:":
            raise gr.Error(INLINE_REFUSED)
        if payload.path is None:
            raise gr.Error("No image was received; upload a photo.")
        path = Path(payload.path).resolve()
        if not path.is_relative_to(Path(get_upload_folder()).resolve()):
            raise gr.Error("Send the image itself (gradio_client: handle_file('photo.jpg')); "
                           "paths on the server are not accepted.")
        return str(path)
