"""The search tab (hub process: gradio only). One public event, `/search`:
(query, k, pos) in, the semantic results out as a JSON list in rank order.
The same call brings the keyword (BM25) results and the timings to the page in
a hidden JSON the API leaves out (`PageOnly`), drawn by a private follow-up step.
Not a gr.State: a State makes every page hold a heartbeat connection open.
"More like this" is the query `like:<id>`: selecting a result's row fills it in.
`embed:<text>` answers the text's vector instead (the encoder as an API): a one-item
list `[{"text", "dim", "encoder", "vector"}]`."""

from __future__ import annotations

import gradio as gr

from demohub.errors import InputError
from demohub.kit import api
from demos.search import EXAMPLES
from demos.search.query import DEFAULT_K, EMBED, LIKE, MAX_K, POS_CHOICES, parse

COLUMNS = ["#", "words", "pos", "gloss", "score", "id"]
WIDTHS = ["4%", "25%", "11%", "28%", "12%", "20%"]  # "claustrophobia", "noun", "0.808" and an id each on one line at 1280 px


class PageOnly(gr.JSON):
    """A JSON value for the page only: the API leaves it out (as it does a State's)."""

    is_template = True  # rendered by the page's own JSON component

    @property
    def skip_api(self) -> bool:
        return True


def rows(results: list[dict] | None) -> list[list]:
    return [[i, ", ".join(r["words"]), r["pos"], r["gloss"], round(r["score"], 3), r["id"]]
            for i, r in enumerate(results or [], 1)]


def summary(answer: dict) -> str:
    ms = answer["ms"]
    if answer.get("embedding"):
        e = answer["embedding"]
        first = ", ".join(f"{x:.3f}" for x in e["vector"][:6])
        return (f"**Embedding of \"{e['text'][:80]}\"**: {e['dim']} numbers, unit length, in {ms['encode']:.1f} ms "
                f"([{first}, …]); the full vector is in the /search API answer below.")
    head = (f"**{len(answer['results'])} results in {ms['total']:.1f} ms** in the worker "
            f"(encode {ms['encode']:.1f} ms, vector search {ms['vector_search']:.1f} ms, "
            f"keyword {ms['keyword']:.1f} ms) over {answer['corpus']}.")
    if answer.get("like"):
        head += f" Entries like `{answer['like']}` (its stored vector: no encoder call)."
    if answer.get("keyword") == []:
        head += " Keyword search found no passage sharing a word with the query."
    return head + " Select a row for more like it."


def render(answer: dict | None):
    if not answer:
        return gr.skip(), gr.skip(), gr.skip()
    return rows(answer["results"]), rows(answer.get("keyword")), summary(answer)


def like_query(evt: gr.SelectData) -> str:
    """A selected row of either table -> `like:<its id>`."""
    row = evt.row_value or []
    return f"{LIKE}{row[-1]}" if row else gr.skip()


def build(ctx) -> None:
    with gr.Row():
        query = api.describe(gr.Textbox(label="Query", info="Describe a word in your own words, like:<id> for entries like a result, or embed:<text> for its vector.",
                           placeholder="a tool for cutting wood", lines=1, max_lines=4,
                           scale=4), "a description in your own words, like:<id> for entries like a result, "
                           "or embed:<text> for the text's vector")
        button = gr.Button("Search", variant="primary", scale=1)
    with gr.Row():
        pos = api.describe(gr.Radio(list(POS_CHOICES), value="any", label="Part of speech"),
                           "the part of speech to keep: " + ", ".join(POS_CHOICES))
        k = api.describe(gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Results (k)"),
                         f"how many results, 1 to {MAX_K}")
    info = gr.Markdown()
    with gr.Row():
        semantic = gr.Dataframe(headers=COLUMNS, label="Semantic search (MiniLM + faiss)", interactive=False,
                                wrap=True, column_widths=WIDTHS)
        keyword = gr.Dataframe(headers=COLUMNS, label="Keyword search (BM25)", interactive=False, wrap=True,
                               column_widths=WIDTHS)
    answer = PageOnly(visible=False)
    with gr.Accordion("The /search API answer", open=False):
        api_answer = api.describe(gr.JSON(label="results"), 'the results in rank order: a JSON list of '
                                  '{"id", "words", "pos", "gloss", "score", "topic"}; for embed:<text>, one '
                                  '{"text", "dim", "encoder", "vector"}')

    def search(query: str, k: int, pos: str, progress=gr.Progress()):
        """Words whose dictionary definition matches a description (WordNet 3.0, semantic search).

        Args:
            query: a description in your own words, like:<id> for entries like a result, or embed:<text> for the text's vector
            k: how many results, 1 to the most the demo allows
            pos: part of speech to keep: any, noun, verb, adjective or adverb
        Returns:
            results: the ranked results as JSON
        """
        try:
            q = parse(query, k, pos)  # here, so a bad query never needs the model loaded
        except InputError as exc:
            raise ctx.input_error(str(exc)) from None
        sent = (LIKE + q.like) if q.like else (EMBED + q.text) if q.embed else q.text
        full = ctx.predict({"query": sent, "k": q.k, "pos": q.pos, "keyword": True}, progress)
        return ([full["embedding"]] if full.get("embedding") else full["results"]), full

    limit = dict(concurrency_limit=ctx.concurrency_limit, concurrency_id=ctx.api_name)
    inputs, outputs = [query, k, pos], [api_answer, answer]
    shown = [semantic, keyword, info]
    button.click(search, inputs, outputs, api_name=ctx.api_name, **limit).then(
        render, answer, shown, api_visibility="private", queue=False)
    query.submit(search, inputs, outputs, api_visibility="private", **limit).then(
        render, answer, shown, api_visibility="private", queue=False)
    for table in (semantic, keyword):
        table.select(like_query, None, query, api_visibility="private", queue=False).then(
            search, inputs, outputs, api_visibility="private", **limit).then(
            render, answer, shown, api_visibility="private", queue=False)
    gr.Examples(examples=[[q] for q in EXAMPLES], inputs=query, label="Try a description",
                cache_examples=False, api_visibility="private")
