"""Assemble report.md and a self-contained report.html (figures embedded) from a run folder."""

from __future__ import annotations

import base64
import html
import io
import re

from bayesrobust.atomic import atomic_path
from bayesrobust.errors import RunError
from bayesrobust.report.sections import SECTIONS, Section, Table
from bayesrobust.runs import RunDir
from bayesrobust.schema import tomllib


def save_figure(run: RunDir, name: str, fig) -> bytes:
    """Write figures/NAME.png and .pdf atomically; return the PNG bytes for embedding."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    png = buffer.getvalue()
    with atomic_path(run.file(f"figures/{name}.png")) as tmp:
        tmp.write_bytes(png)
    with atomic_path(run.file(f"figures/{name}.pdf")) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    return png


def build_report(run: RunDir, *, assume_complete: bool = False) -> None:
    """Render every section whose files exist; write figures, report.md and report.html."""
    from bayesrobust.suites.registry import report_order

    sections = [s for name in report_order() for s in built_sections(SECTIONS.get(name), run, name)]
    env = run.read_json("env.json") if run.file("env.json").exists() else {}
    complete = assume_complete or run.complete
    pngs = {name: save_figure(run, name, fig) for name, fig in unique_figures(sections)}
    run.write_text("report.md", _markdown(run, sections, env, complete))
    run.write_text("report.html", _html(run, sections, env, complete, pngs))


def built_sections(section_function, run: RunDir, name: str = "") -> list[Section]:
    """What one registered section function made of the run: a Section, several (the attack suite's
    analyses), or none when its files are absent. A result key the section needs and the folder lacks is a
    RunError naming both: the folder was written under other key names (an older bayesrobust)."""
    try:
        made = section_function(run)
    except KeyError as exc:
        raise RunError(f"{run.path}: the report section {name or section_function.__name__!r} needs {exc.args[0]!r}, which "
                       "this run folder does not hold; it was written under other key names (before 2026-12's typed keys, "
                       "docs/architecture.md 'Keys and registries'): rebuild it with the version that wrote it, or run "
                       "the experiment again") from None
    return [] if made is None else made if isinstance(made, list) else [made]


def unique_figures(sections: list[Section]) -> list[tuple[str, object]]:
    """Every section's (name, figure); a name two figures share is an error (figures/NAME.png would keep
    only the last, and the earlier section would show the other's picture)."""
    owner: dict[str, str] = {}
    for s in sections:
        for name, _, _ in s.figures:
            if name in owner:
                raise RunError(f"figure name {name!r} is written by section {owner[name]!r} and by {s.title!r}: "
                               "each figure needs a name of its own")
            owner[name] = s.title
    return [(name, fig) for s in sections for name, fig, _ in s.figures]


def _title(run: RunDir) -> str:
    """The run's own name (``run.name`` in its config), with its folder when they differ."""
    name = run.path.name
    if run.file("config.toml").exists():
        name = tomllib.loads(run.file("config.toml").read_text()).get("run", {}).get("name") or name
    return f"bayesrobust run: {name}" + (f" ({run.path.name})" if name != run.path.name else "")


def _env_line(env: dict) -> str:
    v = env.get("versions", {})
    cpu = (f", CPU {env['cpu']} (ATen {env.get('aten_cpu_capability')}, oneDNN ISA {env.get('onednn_max_cpu_isa')})"
           if "cpu" in env else "")
    return (f"seed {env.get('seed')}, device {env.get('device')}, git {str(env.get('git_revision'))[:10]}, "
            f"torch {v.get('torch')}, bayesrobust {v.get('bayesrobust')}{cpu}, "
            f"wall time {env.get('wall_seconds', float('nan')):.1f} s" + _stages(env.get("stage_seconds", {})))


def _stages(stages: dict) -> str:
    """Where the wall time went, before the report itself was built: '(data 1 s, models 160 s, …)'."""
    return f" ({', '.join(f'{k} {v:.0f} s' for k, v in stages.items())})" if stages else ""


def _markdown(run: RunDir, sections: list[Section], env: dict, complete: bool) -> str:
    out = [f"# {_title(run)}", ""]
    if not complete:
        out += ["**INCOMPLETE RUN: results below are partial.**", ""]
    out += [_env_line(env), ""]
    for s in sections:
        out += [f"## {s.title}", "", s.text, ""]
        out += [line for w in s.warnings for line in (f"> **Warning:** {w}", "")]
        for t in s.tables:
            out += [f"**{t.caption}**", "", _md_table(t), ""]
        for name, _, caption in s.figures:
            out += [f"![{caption}](figures/{name}.png)", "", f"*{caption}*", ""]
    return "\n".join(out)


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(r) + " |" for r in t.rows]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.table{overflow-x:auto;margin:.5em 0 1.5em}table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td.iv{white-space:nowrap}th:first-child,td:first-child{text-align:left}.caption{font-weight:600;margin:.3em 0}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#555}
.warn{background:#fee;border:1px solid #c00;padding:.5em}.env{color:#666;font-size:.9em}"""


_INTERVAL = re.compile(r"\[[^\]]*,[^\]]*\]")


def _cell(text: str) -> str:
    """A table cell; one holding an interval ("0.97 [0.96, 0.98]") never wraps, so a number and its
    interval stay on one line (the table scrolls instead); text cells wrap as usual."""
    return f"<td class='iv'>{text}</td>" if _INTERVAL.search(text) else f"<td>{text}</td>"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _html(run: RunDir, sections: list[Section], env: dict, complete: bool, pngs: dict[str, bytes]) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(_title(run))}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(_title(run))}</h1>"]
    if not complete:
        out.append("<p class='warn'>INCOMPLETE RUN: results below are partial.</p>")
    out.append(f"<p class='env'>{e(_env_line(env))}</p>")
    for s in sections:
        out.append(f"<section id='{e(_slug(s.title))}'><h2>{e(s.title)}</h2><p>{e(s.text)}</p>")
        out += [f"<p class='warn'>Warning: {e(w)}</p>" for w in s.warnings]
        for t in s.tables:
            head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
            body = "".join("<tr>" + "".join(_cell(e(c)) for c in r) + "</tr>" for r in t.rows)
            out.append(f"<div class='table'><p class='caption'>{e(t.caption)}</p><table><tr>{head}</tr>{body}</table></div>")
        for name, _, caption in s.figures:
            data = base64.b64encode(pngs[name]).decode()
            out.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'><figcaption>{e(caption)}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
