"""The browser pages: sign-in, usage, API keys; in English and Korean.

``routes`` (the route table, signing in and out, the usage page) and ``keys_page`` answer
requests; ``forms`` guards what they post; ``render`` turns values into HTML through the
Jinja2 templates of ``templates/``, helped by ``chart`` (the spending chart's geometry),
``language`` (which language, and numbers and dates in it) and ``strings`` (every visible
word); ``responses`` and ``assets`` are what goes back to the browser.
"""
