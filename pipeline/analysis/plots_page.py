"""The HTML template that lets `dvc plots show` draw its page offline.

DVC's stock page loads Vega, Vega-Lite and vega-embed from a CDN, which an air-gapped machine
cannot reach. This template inlines them instead, from the JavaScript bundle that the installed
vl-convert-python wheel carries, and has no `{scripts}` placeholder, so DVC adds no CDN tags.
`.dvc/config` names it (`plots.html_template`, a path relative to `.dvc/`). Each plot draws as
SVG; a plot that fails shows its error in place of the chart (class `vega-error`).
"""

from importlib.metadata import version

import vl_convert

VEGA_LITE = "5.21"  # DVC's plot templates are Vega-Lite v5 specs

# DVC's plot divs call vegaEmbed(id, spec): draw as SVG, no link to the online editor, and
# show an error on the page rather than a blank space.
EMBED = """(() => {
  const embed = window.vegaEmbed;
  const options = {renderer: "svg", actions: {export: true, source: true, compiled: true, editor: false}};
  window.vegaEmbed = (element, spec, extra) =>
    embed(element, spec, {...options, ...extra}).catch((error) => {
      const note = document.createElement("pre");
      note.className = "vega-error";
      note.textContent = `Plot failed: ${error.message}`;
      document.querySelector(element).append(note);
    });
})();"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {versions}, inlined from vl-convert-python {package} -->
    <script>
(() => {
{bundle}
})();
    </script>
    <script>
{embed}
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script that sets them on `window`, safe inside a <script> tag."""
    return vl_convert.javascript_bundle(vl_version=VEGA_LITE).replace("</script", "<\\/script")


def versions() -> str:
    """The bundled libraries' versions, for a comment in the page."""
    vega, embed = vl_convert.get_vega_version(), vl_convert.get_vega_embed_version()
    return f"vega {vega}, vega-lite {VEGA_LITE}, vega-embed {embed}"


def page() -> str:
    """The template: DVC fills `{refresh_tag}` and `{plot_divs}`."""
    fills = {
        "{versions}": versions(),
        "{package}": version("vl-convert-python"),
        "{embed}": EMBED,
        "{bundle}": bundle(),
    }
    text = PAGE
    for placeholder, value in fills.items():
        text = text.replace(placeholder, value)
    return text
