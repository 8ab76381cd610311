import { createHash } from 'node:crypto'

/**
 * The one stylesheet of the hosted pages. It is served from the API itself at a URL that carries
 * its content hash, so it can be cached for a year and a change reaches browsers at once; the
 * pages' CSP allows `style-src 'self'` and nothing more. No `url()`, no fonts, no images: every
 * other fetch stays refused by `default-src 'none'`.
 *
 * Colours meet WCAG AA in both schemes: body text 7:1 or better, muted text and the button label
 * 4.5:1 or better, borders and the focus outline 3:1 or better against what they sit on.
 */
export const STYLESHEET = `:root {
  color-scheme: light dark;
  --bg: #f3f4f6;
  --card: #ffffff;
  --line: #d1d5db;
  --text: #1f2328;
  --muted: #4b5563;
  --field: #6b7280;
  --accent: #1d4ed8;
  --accent-hover: #1e3a8a;
  --on-accent: #ffffff;
  --error: #b91c1c;
  --error-bg: #fef2f2;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1115;
    --card: #1a1d23;
    --line: #374151;
    --text: #e6e8eb;
    --muted: #b4bac4;
    --field: #8b93a1;
    --accent: #8ab4f8;
    --accent-hover: #aecbfa;
    --on-accent: #0b1b33;
    --error: #ff8a80;
    --error-bg: #2a1616;
  }
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0;
  min-height: 100vh;
  min-height: 100dvh;
  display: flex;
  align-items: center;
  justify-content: center;
  padding: 1.5rem 1rem;
  background: var(--bg);
  color: var(--text);
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", Arial, sans-serif;
  font-size: 1rem;
  line-height: 1.5;
}
main {
  width: 100%;
  max-width: 28rem;
  padding: 2rem 1.75rem;
  background: var(--card);
  border: 1px solid var(--line);
  border-radius: 0.75rem;
  box-shadow: 0 1px 3px rgb(0 0 0 / 0.08), 0 8px 24px rgb(0 0 0 / 0.06);
}
@media (max-width: 30rem) {
  body { padding: 0; align-items: stretch; }
  main { max-width: none; padding: 1.5rem 1.25rem; border: 0; border-radius: 0; box-shadow: none; }
}
.brand {
  margin: 0 0 0.5rem;
  color: var(--muted);
  font-size: 0.875rem;
  font-weight: 600;
  letter-spacing: 0.05em;
  text-transform: uppercase;
}
h1 { margin: 0 0 1rem; font-size: 1.5rem; line-height: 1.25; text-wrap: balance; }
p { margin: 0 0 1rem; }
a { color: var(--accent); text-underline-offset: 0.15em; }
form { margin: 1.5rem 0 0; }
.field { margin: 0 0 1.25rem; }
label { display: block; margin: 0 0 0.25rem; font-weight: 600; }
.hint { margin: 0 0 0.5rem; color: var(--muted); font-size: 0.9375rem; }
input {
  display: block;
  width: 100%;
  min-height: 2.75rem;
  margin: 0;
  padding: 0.5rem 0.75rem;
  color: var(--text);
  background: var(--card);
  border: 1px solid var(--field);
  border-radius: 0.375rem;
  font: inherit;
}
input[aria-invalid="true"] { border: 2px solid var(--error); }
button {
  display: block;
  width: 100%;
  min-height: 2.75rem;
  margin: 0;
  padding: 0.625rem 1.25rem;
  color: var(--on-accent);
  background: var(--accent);
  border: 2px solid transparent;
  border-radius: 0.375rem;
  font: inherit;
  font-weight: 600;
  cursor: pointer;
}
button:hover { background: var(--accent-hover); }
input:focus, :focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
button:focus:not(:focus-visible) { outline: none; }
.alert {
  margin: 0 0 1.5rem;
  padding: 0.875rem 1rem 0.875rem 1.25rem;
  background: var(--error-bg);
  border: 2px solid var(--error);
  border-left-width: 0.5rem;
  border-radius: 0.375rem;
}
.alert-title { margin: 0 0 0.5rem; font-weight: 700; }
.alert ul { margin: 0; padding-left: 1.25rem; }
.alert li + li { margin-top: 0.25rem; }
@media (forced-colors: active) {
  button { border-color: ButtonText; }
  input:focus, :focus-visible { outline-color: Highlight; }
}
`

/** First 16 hex digits of the SHA-256 of the stylesheet: changes whenever the content does. */
export const STYLESHEET_HASH = createHash('sha256').update(STYLESHEET).digest('hex').slice(0, 16)

/** Where the stylesheet is served; pages link to it. Cacheable for a year: the hash is in the URL. */
export const STYLESHEET_PATH = `/pages/style.${STYLESHEET_HASH}.css`
