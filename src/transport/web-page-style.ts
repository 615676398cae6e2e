/** The stylesheet of the broker's page (web-page.ts): system fonts, no external resources. */
export const PAGE_STYLE = `
:root { --ink: #1d2330; --muted: #5b6270; --line: #dde1e7; --bg: #f4f5f7; --card: #fff; --accent: #2451b7;
  --ok: #1e7b45; --ok-bg: #e3f4ea; --warn: #8a5a00; --warn-bg: #fdf1d8; --bad: #a4161a; --bad-bg: #fbe4e4; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
header, main { max-width: 46rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 2rem; }
h1 { margin: 0; font-size: 1.5rem; }
h2 { margin: 0 0 .75rem; font-size: 1.1rem; }
h3 { margin: 0; font-size: 1rem; }
.lead { margin: .25rem 0 1.25rem; color: var(--muted); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1.25rem; margin-bottom: 1rem; }
.card-head { display: flex; justify-content: space-between; align-items: center; margin-bottom: .75rem; }
.card-head h2 { margin: 0; }
label { display: block; font-weight: 600; margin: .75rem 0 .3rem; }
input, select, textarea { width: 100%; font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
textarea { font-family: ui-monospace, monospace; font-size: .85rem; resize: vertical; }
.row { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1rem; }
.hint { margin: .4rem 0 0; color: var(--muted); font-size: .85rem; }
.actions { display: flex; gap: .5rem; margin-top: 1rem; }
button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid var(--line); background: #fff; color: var(--ink); cursor: pointer; }
button:hover { border-color: var(--muted); }
button:disabled { opacity: .5; cursor: not-allowed; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--bad); border-color: #e7b4b5; }
button.danger.solid { background: var(--bad); border-color: var(--bad); color: #fff; }
code { background: #eef0f3; padding: 0 .25rem; border-radius: 3px; font-size: .9em; }
#signed-in { display: flex; justify-content: space-between; align-items: center; }
#signed-in p { margin: 0; }
#outcome { padding: .6rem .9rem; border-radius: 6px; margin: 0 0 1rem; background: #e8eefb; }
#outcome[data-kind="ok"] { background: var(--ok-bg); color: var(--ok); }
#outcome[data-kind="error"] { background: var(--bad-bg); color: var(--bad); }
.integrations { list-style: none; margin: 0; padding: 0; }
.integration { border-top: 1px solid var(--line); padding: 1rem 0; }
.integration:first-child { border-top: 0; padding-top: 0; }
.integration-head { display: flex; align-items: center; gap: .6rem; }
.badge { font-size: .75rem; font-weight: 600; padding: .1rem .5rem; border-radius: 999px; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
dl { display: grid; grid-template-columns: 9rem 1fr; gap: .3rem 1rem; margin: .75rem 0 0; }
dl > div { display: contents; }
dt { color: var(--muted); }
dd { margin: 0; }
.scopes { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem; margin: 0; padding: 0; }
.scopes li { font-family: ui-monospace, monospace; font-size: .8rem; background: #eef0f3; padding: 0 .4rem; border-radius: 4px; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 1.25rem; max-width: 28rem; }
dialog::backdrop { background: rgba(29, 35, 48, .4); }
dialog p { margin: 0; }
@media (max-width: 560px) { .row, dl { grid-template-columns: 1fr; } }
`;
