"""Reading and writing LaMP's files: questions, outputs and rankings checked on load
(``data``), fast JSON parsing (``fastjson``), one big JSON array split into items without
loading it whole (``jsonsplit``), item streams (``streams``) and YAML (``yamlfile``)."""
