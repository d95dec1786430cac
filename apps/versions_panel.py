"""The index versions of a collection in the app: which one questions use, adapting the embedder to the
collection's documents (progress, then before / after), resuming and deleting versions.

UI only: what a version is, whether it can be used, how an adaptation went and whether the adapted embedder is
worse are decided by :mod:`retrievals_rag.rag.versions`; this draws them. Jobs run in the engine, outside the
script run; the progress part polls them and redraws the page when they end.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from rag_ui import POLL_SECONDS, ask_confirmation, duration, plain, short, show_error

from retrievals_rag.data.generation import DEFAULT_QUESTION_PROMPT
from retrievals_rag.rag import AdaptSettings, CollectionVersion, RagEngine
from retrievals_rag.training.adapt_settings import QUERY_LIKELIHOOD_TEACHER

GENERATOR_LABELS = {
    "cropping": "Spans of the passages (fast, no LLM)",
    "title": "Titles and headings the passages open with (fast, no LLM)",
    "smollm2": "SmolLM2-135M-Instruct (local)",
    "openai": "The OpenAI-compatible server of the settings",
}
CHAT_GENERATORS = ("smollm2", "openai")  # the generators that are asked with a prompt
EXPLANATION = (
    "Questions are written for this collection's passages (no labels needed), the embedder is trained to find "
    "each passage from its questions and measured before and after on questions held out of training. The "
    "documents are then embedded again with the adapted model, as a new version of the index: the original "
    "stays, and you choose which one questions use."
)
API_KEY_VARIABLE = "RETRIEVALS_RAG_LLM_API_KEY"  # the server's key, read by the job from the environment


def versions_panel(
    engine: RagEngine, collection: str, openai: tuple[str, str] | None, smollm2_problem: str | None
) -> None:
    """The versions of ``collection`` and the adaptation form, in an expander of the main area.

    Args:
        engine: The engine.
        collection: The collection shown.
        openai: The OpenAI-compatible server of the settings (URL, model), when one is configured.
        smollm2_problem: Why the local SmolLM2 cannot write questions, or None.
    """
    try:
        versions = engine.collection_versions(collection)
    except Exception as error:
        show_error("Cannot list the index versions", error)
        return
    jobs = [job for job in engine.jobs(collection) if job.kind != "index"]
    running = [job for job in jobs if job.active]
    # Open while a job runs and once there are versions to choose from; once open, it stays open in this session:
    # Streamlit rebuilds an expander, folded, whenever its `expanded` argument changes (e.g. at a job's end).
    kept_open = f"versions_panel_open::{collection}"
    opened = bool(running) or len(versions) > 1 or bool(st.session_state.get(kept_open))
    st.session_state[kept_open] = opened
    with st.expander("Index versions · adapt the embedder to these documents", expanded=opened):
        job_progress(engine, collection, bool(running))
        version_switch(engine, collection, versions)
        for version in versions[1:]:
            version_box(engine, collection, version)
        if "version_error" in st.session_state:
            st.error(plain(st.session_state.pop("version_error")))
        adapt_form(
            engine, collection, openai, smollm2_problem, busy=any(job.kind == "adapt" for job in running)
        )


def job_progress(engine: RagEngine, collection: str, active: bool) -> None:
    """The running version jobs with their progress, redrawn every second; the page is redrawn when they end."""

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def progress() -> None:
        jobs = [job for job in engine.jobs(collection) if job.kind != "index"]
        running = [job for job in jobs if job.active]
        if active and not running:  # a job just ended: redraw the page (the switch, the before / after)
            st.rerun()
        for job in running:
            value, text = job_line(job)
            st.progress(value, text=plain(text))
            st.button("Cancel", key=f"cancel-version-{job.id}", on_click=job.cancel)
        for job_id in st.session_state.get("my_version_jobs", []):
            job = engine.job(job_id)
            if job is None or job.active:
                continue
            if job.state == "done":
                st.success(plain(f"{job.report.name} is ready: choose it under 'Questions use'."))
            elif job.state == "failed":
                show_error(f"{', '.join(job.names)} stopped", job.error or "")

    progress()


def job_line(job: Any) -> tuple[float, str]:
    """A version job's progress bar value and text: the stage, done of total, the time left in the stage."""
    what = "Adapting the embedder" if job.kind == "adapt" else "Embedding the chunks"
    name = ", ".join(job.names)
    progress = job.progress
    if job.state == "queued" or progress is None:
        waiting = "waiting for the job before it" if job.state == "queued" else "starting"
        return 0.0, f"{what} ({name}): {waiting}…"
    left = progress.eta_seconds
    eta = f", about {duration(left)} left" if left is not None else ""
    count = f": {progress.done} of {progress.total}" if progress.total else ""
    return progress.fraction, f"{what} ({name}): {progress.stage_label}{count}{eta}"


def version_label(version: CollectionVersion) -> str:
    if version.name == "original":
        embedder = (
            "all-MiniLM-L6-v2" if version.embedder is None else version.embedder.rstrip("/").split("/")[-1]
        )
        return f"original ({embedder})"
    if version.result is not None and "nDCG@10" in version.result.before:
        before, after = version.result.before["nDCG@10"], version.result.after["nDCG@10"]
        return f"{version.name} (nDCG@10 {before:.3f} → {after:.3f})"
    return version.name


def version_switch(engine: RagEngine, collection: str, versions: list[CollectionVersion]) -> None:
    """Choose the version questions use, among those built whole."""
    usable = [version for version in versions if version.usable]
    if len(usable) < 2:
        return
    key = f"use-version-{collection}"
    st.session_state[key] = next(version.name for version in versions if version.active)
    labels = {version.name: version_label(version) for version in usable}
    st.radio(
        "Questions use",
        list(labels),
        key=key,
        format_func=labels.__getitem__,
        on_change=use_version,
        args=(engine, collection, key),
        horizontal=True,
    )


def use_version(engine: RagEngine, collection: str, key: str) -> None:
    try:
        engine.use_version(collection, st.session_state[key])
    except Exception as error:
        st.session_state["version_error"] = short(error)


def version_box(engine: RagEngine, collection: str, version: CollectionVersion) -> None:
    """One version: its state, its before / after, Resume and Delete (asked twice)."""
    box = st.container(border=True)
    box.text(version.describe())
    result = version.result
    if result is not None and result.rows():
        box.table(
            [
                {
                    "metric": name,
                    "original": f"{before:.4f}",
                    "adapted": f"{after:.4f}",
                    "change": f"{change:+.4f}",
                }
                for name, before, after, change in result.rows()
            ]
        )
        box.caption(
            plain(
                f"{result.questions} questions for {result.passages_used} passages ({result.generator}, "
                f"{result.questions_per_second:.1f} questions/s); measured on {result.data}"
            )
        )
        if result.worse:
            box.warning(
                "The adapted embedder ranks the held-out questions worse than the original: keep the original."
            )
    if version.resumable or version.needs_update:
        box.button(
            "Resume" if version.resumable else "Update",
            key=f"resume-{version.name}",
            on_click=resume_version,
            args=(engine, collection, version.name),
        )
    if version.running:
        return
    target = ("version", collection, version.name)
    if st.session_state.get("confirm") == target:
        box.warning(plain(f"Delete {version.name} (its vectors and its adapted model)?"))
        yes, no = box.columns(2)
        yes.button(
            "Yes, delete it", key=f"yes-{version.name}", type="primary", on_click=delete_version,
            args=(engine, collection, version.name),
        )  # fmt: skip
        no.button("Cancel", key=f"no-{version.name}", on_click=st.session_state.pop, args=("confirm", None))
    else:
        box.button(
            f"Delete {version.name}", key=f"delete-{version.name}", on_click=ask_confirmation, args=(target,)
        )


def resume_version(engine: RagEngine, collection: str, name: str) -> None:
    try:
        job = engine.resume_version(collection, name)
    except Exception as error:
        st.session_state["version_error"] = short(error)
    else:
        st.session_state["my_version_jobs"] = [job.id]


def delete_version(engine: RagEngine, collection: str, name: str) -> None:
    st.session_state.pop("confirm", None)
    try:
        engine.delete_version(collection, name)
    except Exception as error:
        st.session_state["version_error"] = f"Cannot delete {name}: {short(error)}"


def adapt_form(
    engine: RagEngine,
    collection: str,
    openai: tuple[str, str] | None,
    smollm2_problem: str | None,
    busy: bool,
) -> None:
    """The generator choice and the button that starts an adaptation; its error is shown right below it."""
    st.markdown("**Adapt the embedder to these documents**")
    st.caption(EXPLANATION)
    choices = ["cropping", "title", "smollm2", *(["openai"] if openai is not None else [])]
    generator = st.radio(
        "Questions written by",
        choices,
        format_func=GENERATOR_LABELS.__getitem__,
        key=f"generator-{collection}",
    )
    unavailable = generator == "smollm2" and smollm2_problem is not None
    if unavailable:
        st.warning(plain(smollm2_problem or ""))
    if generator == "openai" and openai is not None:
        st.caption(plain(f"{openai[1]} at {openai[0]} (key from ${API_KEY_VARIABLE}, if set)"))
    if generator in CHAT_GENERATORS:
        with st.expander("What the model is asked"):
            st.text_area(
                'Prompt ({passage}: the passage; {questions}: "one question")',
                value=DEFAULT_QUESTION_PROMPT,
                key=f"prompt-{collection}",
                help="Ask for what your users will type: questions, claims, keywords, another language.",
            )
            st.checkbox(
                "Keep replies that are not questions (claims, keywords)",
                key=f"any-reply-{collection}",
            )
    st.checkbox(
        "Let SmolLM2 judge the training pairs (slower)",
        key=f"teacher-{collection}",
        disabled=smollm2_problem is not None,
        help=(
            "SmolLM2 scores how likely each passage makes each question (query likelihood, no labels needed): "
            "negatives it ranks above the answer are dropped and the embedder learns its margins. 1 to 2 pairs "
            "a second on a CPU, four pairs per question."
            if smollm2_problem is None
            else smollm2_problem
        ),
    )
    st.button(
        "Adapt the embedder",
        type="primary",
        disabled=busy or unavailable,
        help="One adaptation at a time; questions are answered meanwhile." if busy else None,
        on_click=start_adaptation,
        args=(engine, collection, generator, openai),
    )
    if "adapt_error" in st.session_state:
        show_error("Cannot adapt", st.session_state.pop("adapt_error"))


def start_adaptation(
    engine: RagEngine, collection: str, generator: str, openai: tuple[str, str] | None
) -> None:
    # read here, not bound when the button was drawn: an edit committed by the click itself counts
    prompt = st.session_state.get(f"prompt-{collection}", DEFAULT_QUESTION_PROMPT)
    asks_model = generator in CHAT_GENERATORS
    question_prompt = prompt if asks_model and prompt.strip() != DEFAULT_QUESTION_PROMPT.strip() else None
    any_reply = asks_model and bool(st.session_state.get(f"any-reply-{collection}"))
    reply_form = "any" if any_reply else "question"
    teacher = QUERY_LIKELIHOOD_TEACHER if st.session_state.get(f"teacher-{collection}") else None
    try:
        if generator == "openai" and openai is not None:
            settings = AdaptSettings(
                generator="openai",
                openai_base_url=openai[0],
                openai_model=openai[1],
                openai_api_key_env=API_KEY_VARIABLE,
                question_prompt=question_prompt,
                reply_form=reply_form,
                teacher=teacher,
            )
        else:
            settings = AdaptSettings(
                generator=generator,  # type: ignore[arg-type]
                question_prompt=question_prompt,
                reply_form=reply_form,
                teacher=teacher,
            )
        job = engine.submit_adaptation(collection, settings)
    except Exception as error:
        st.session_state["adapt_error"] = short(error)
    else:
        st.session_state["my_version_jobs"] = [job.id]
