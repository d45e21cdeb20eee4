"""The prompt's text, shipped as package data and read by `tether.engine.prompt`: `prompt.txt` (the
instructions, with `{tools}` and `{examples}` filled in) and `examples.txt` (worked examples, each
shown only when every command it calls is registered); `closed_book.txt` (the closed-book pass's
instructions, with `{answer_format}` filled in, read by `tether.engine.closed_book`)."""
