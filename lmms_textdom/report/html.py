"""The table as one self-contained HTML page: click a header to sort by it (again to reverse).

Each cell carries its sortable value in ``data-value``; empty cells sort last either way. The page
opens sorted when its address ends in ``#sort=<column key>`` or ``#sort=<column key>:desc`` (by
clicking that header once or twice), and a click writes that fragment, so a sorted view can be
shared as a link. (No table library such as DataTables: one dependency-free file that opens offline.)
"""

from __future__ import annotations

from html import escape

from lmms_textdom.report.render import provenance_text
from lmms_textdom.report.table import COLUMNS, Row

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
caption { caption-side: top; text-align: left; max-width: 70em; margin-bottom: 0.6em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; white-space: nowrap; }
th { cursor: pointer; background: #f2f2f2; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.interval { color: #666; }
"""

SCRIPT = """
(function () {
  const table = document.getElementById("leaderboard");
  const headers = Array.from(table.tHead.rows[0].cells);
  function sortBy(key, descending) {
    const index = headers.findIndex(th => th.dataset.key === key);
    if (index < 0) return;
    const numeric = headers[index].dataset.numeric === "1";
    const body = table.tBodies[0];
    const value = row => row.cells[index].dataset.value;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    rows.forEach(row => body.appendChild(row));
    headers.forEach(th => th.removeAttribute("aria-sort"));
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  headers.forEach(th => th.addEventListener("click", () => {
    const descending = th.getAttribute("aria-sort") === "ascending";
    sortBy(th.dataset.key, descending);
    history.replaceState(null, "", "#sort=" + th.dataset.key + (descending ? ":desc" : ""));
  }));
  // a #sort= fragment is applied by clicking its header, exactly as a reader would
  const wanted = /^#sort=([A-Za-z0-9_]+)(:desc)?$/.exec(location.hash);
  const header = wanted && headers.find(th => th.dataset.key === wanted[1]);
  if (header) {
    header.click();
    if (wanted[2]) header.click();
  }
})();
"""


def cell(row: Row, key: str, numeric: bool) -> str:
    value = row.number(key)
    shown = escape(row.text(key))
    if " [" in shown:  # value [low, high]: the interval in a quieter colour
        point, interval = shown.split(" [", 1)
        shown = f'{point} <span class="interval">[{interval}</span>'
    css = ' class="number"' if numeric else ""
    return f'<td{css} data-key="{key}" data-value="{escape("" if value is None else str(value))}">{shown}</td>'


def page(rows: list[Row], caption: str, notes: list[str], columns=COLUMNS) -> str:
    head = "".join(f'<th data-key="{c.key}" data-numeric="{int(c.numeric)}" title="sort by {escape(c.header)}">{escape(c.header)}</th>' for c in columns)
    body = "\n".join("<tr>" + "".join(cell(row, c.key, c.numeric) for c in columns) + "</tr>" for row in rows)
    notes_html = "<h2>Notes</h2>\n<ul>\n" + "\n".join(f"<li>{escape(n)}</li>" for n in notes) + "\n</ul>\n" if notes else ""
    provenance = "\n".join(f'<li><b>{escape(row.label)}</b>: {escape(provenance_text(row)).replace("`", "")}</li>' for row in rows)
    provenance_html = f'<h2>Provenance</h2>\n<ul id="provenance">\n{provenance}\n</ul>\n'

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lmms-textdom leaderboard</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Text dominance: MDI and AEI by run</h1>
<table id="leaderboard">
<caption>{escape(caption)} Click a column header to sort.</caption>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
{provenance_html}{notes_html}<script>{SCRIPT}</script>
</body>
</html>
"""
