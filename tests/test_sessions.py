"""Light Gradio sessions (demohub/web/sessions.py), against Gradio's own SessionState."""

from __future__ import annotations

import gradio as gr
from gradio.state_holder import SessionState, StateHolder

from demohub.web.sessions import LightSessionState, LightStateHolder, lighten


def small_blocks() -> gr.Blocks:
    with gr.Blocks() as blocks:
        box = gr.Textbox()
        out = gr.Textbox()
        counter = gr.State(0)
        box.submit(lambda text, n: (text.upper(), n + 1), [box, counter], [out, counter])
    return blocks


def test_a_light_session_is_gradios_session_without_the_snapshot():
    blocks = small_blocks()
    full, light = SessionState(blocks), LightSessionState(blocks)
    assert sorted(vars(light)) == sorted(vars(full))  # a Gradio upgrade that adds state fails here
    assert full.config_values and light.config_values == {}
    assert light.blocks_config.blocks.keys() == full.blocks_config.blocks.keys()


def test_a_light_session_still_keeps_state_and_records_updates():
    blocks = small_blocks()
    counter = next(b for b in blocks.blocks.values() if isinstance(b, gr.State))
    box = next(b for b in blocks.blocks.values() if isinstance(b, gr.Textbox))
    session = LightSessionState(blocks)
    assert session[counter._id] == 0  # the State's initial value, as in Gradio's own session
    session[counter._id] = 5
    assert session[counter._id] == 5
    session._update_value_in_config(box._id, "typed")
    assert session.config_values[box._id]["props"]["value"] == "typed"


def test_lighten_makes_the_shared_store_create_light_sessions():
    blocks = small_blocks()
    holder = StateHolder()
    holder.set_blocks(blocks)
    lighten(holder)
    assert isinstance(holder, LightStateHolder) and blocks.state_holder is holder
    session = holder["abc"]
    assert isinstance(session, LightSessionState) and holder["abc"] is session
