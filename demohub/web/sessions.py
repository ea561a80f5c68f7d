"""Gradio sessions without the deep-link snapshot.

For every new session (each HTTP API call is one; a browser tab or a
gradio_client is one) Gradio's `SessionState` builds the config of every block
on the page, so `/gradio_api/deep_link` can later save what the session sees.
The hub's door closes that route (demohub/web/gate.py), and the work cost 3.1 ms
per session for the hub's 56 blocks: ~3 % of two cores at 22 API calls a second.
Sessions here start with no snapshot; blocks a handler updates are still
recorded, exactly as Gradio does after the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradio.state_holder import SessionState, StateHolder


@dataclass(frozen=True)
class _NoBlocks:
    """What `SessionState.__init__` reads from the Blocks, with no block to snapshot."""

    default_config: Any
    blocks: tuple = ()


class LightSessionState(SessionState):
    def __init__(self, blocks: Any):
        super().__init__(_NoBlocks(blocks.default_config))


class LightStateHolder(StateHolder):
    def __getitem__(self, session_id: str) -> SessionState:
        if session_id not in self.session_data:
            self.session_data[session_id] = LightSessionState(self.blocks)
        return super().__getitem__(session_id)


def lighten(state_holder: StateHolder) -> None:
    """Make the mounted app's session store create light sessions (the one
    instance Gradio's app and Blocks share, so both see the change)."""
    state_holder.__class__ = LightStateHolder
