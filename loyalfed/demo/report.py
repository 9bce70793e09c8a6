"""The demo report: sections of text, tables and PNG figures, written as HTML and Markdown."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class _Block:
    kind: str  # "heading" | "text" | "table" | "figure"
    title: str = ""
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    image: str = ""  # path relative to the report's folder


@dataclass
class Report:
    title: str
    blocks: list[_Block] = field(default_factory=list)

    def add_heading(self, title: str) -> None:
        self.blocks.append(_Block("heading", title=title))

    def add_text(self, text: str) -> None:
        self.blocks.append(_Block("text", text=text))

    def add_table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(
            _Block(
                "table",
                title=title,
                header=tuple(header),
                rows=tuple(tuple(str(c) for c in r) for r in rows),
            )
        )

    def add_figure(self, title: str, image: str) -> None:
        """Add a PNG already written under the report's folder (``image`` is relative to it)."""
        self.blocks.append(_Block("figure", title=title, image=image))

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        html_path, md_path = out_dir / "report.html", out_dir / "report.md"
        html_path.write_text(self.to_html(), encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return html_path, md_path

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for b in self.blocks:
            if b.kind == "heading":
                lines += [f"## {b.title}", ""]
            elif b.kind == "text":
                lines += [b.text, ""]
            elif b.kind == "table":
                lines += [f"**{b.title}**", "", "| " + " | ".join(b.header) + " |"]
                lines.append("|" + "---|" * len(b.header))
                lines += ["| " + " | ".join(r) + " |" for r in b.rows]
                lines.append("")
            else:
                lines += [f"![{b.title}]({b.image})", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for b in self.blocks:
            if b.kind == "heading":
                parts.append(f"<h2>{e(b.title)}</h2>")
            elif b.kind == "text":
                parts.append(f"<p>{e(b.text)}</p>")
            elif b.kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b.header)
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
                parts.append(f"<table><caption>{e(b.title)}</caption><tr>{head}</tr>{body}</table>")
            else:
                parts.append(
                    f"<figure><img src='{e(b.image)}' alt='{e(b.title)}'>"
                    f"<figcaption>{e(b.title)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
    "caption{font-weight:bold;text-align:left}img{max-width:100%}"
)
