"""Generated documentation: the certified derivation handout (``handout``) and the API page
(``apidoc``)."""
