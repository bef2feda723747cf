"""Generated documentation: certified derivation handouts (``handout``: any small net, English or
Chinese, Markdown or .tex; built on ``derivation``, which generates and checks the factored forms),
``handgrad handout`` (``handout_cli``), lecture-ready ``derive --latex`` output (``derive_format``,
``latex``) and the API page (``apidoc``)."""
