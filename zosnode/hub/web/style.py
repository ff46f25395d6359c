"""The pages' one stylesheet, served as /static/hub.css (a constant: no file to find
in a zipapp). Small screens first: tables scroll sideways, forms stack."""

CSS = """\
:root{--fg:#1d232a;--muted:#5b6773;--line:#d6dce2;--bg:#fff;--accent:#0b5cad;
--ok:#1d7a3a;--warn:#9a6400;--bad:#b3261e;font-family:system-ui,sans-serif}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);line-height:1.45}
header{background:#17212b;padding:.6rem 1rem}
header nav{display:flex;flex-wrap:wrap;gap:1rem;max-width:72rem;margin:auto}
header a{color:#fff;text-decoration:none;font-weight:600}
header a.json{margin-left:auto;font-weight:400;opacity:.8}
main{max-width:72rem;margin:auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0 1rem}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
a{color:var(--accent)}
.muted{color:var(--muted)}
.table{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{background:#f3f5f7;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre,.mono{font-family:ui-monospace,monospace;font-size:.88rem}
pre{background:#f3f5f7;border:1px solid var(--line);border-radius:6px;padding:.6rem;
white-space:pre-wrap;word-break:break-all}
form.stack{display:grid;gap:.8rem;max-width:36rem}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end}
form.filters select{max-width:14rem}
td.seen{white-space:nowrap}
label{display:grid;gap:.2rem;font-weight:600}
input[type=text],select{font:inherit;padding:.45rem;border:1px solid var(--line);
border-radius:4px;width:100%}
fieldset{border:1px solid var(--line);border-radius:6px}
fieldset label{display:flex;gap:.4rem;font-weight:400}
button,.button{font:inherit;background:var(--accent);color:#fff;border:0;border-radius:4px;
padding:.5rem 1rem;text-decoration:none;display:inline-block;cursor:pointer}
.state{font-weight:600}
.state-ready{color:var(--ok)}
.state-upgrading,.state-starting,.state-booting{color:var(--warn)}
.state-failed,.state-failed-release,.state-stale,.error{color:var(--bad)}
.counts{display:flex;flex-wrap:wrap;gap:.5rem;padding:0;list-style:none}
.counts li{border:1px solid var(--line);border-radius:4px;padding:.2rem .5rem}
.pages{display:flex;gap:1rem;margin:.8rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}
@media (max-width:40rem){dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}
main{padding:.6rem}}
"""
