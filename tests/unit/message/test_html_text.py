"""HTML to plain text: one example per rule, a newsletter, and properties on arbitrary input."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from email_service.message.html_text import html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # Dropped: script, style, head, title, comments.
        ("<script>var a = '<p>no</p>';</script>shown", "shown\n"),
        ("<style>p { color: red }</style>shown", "shown\n"),
        ("<head><title>Subject</title><meta charset='utf-8'></head><body>shown</body>", "shown\n"),
        ("<title>Subject</title>shown", "shown\n"),
        ("a<!-- a comment -->b<!--[if mso]><p>Outlook</p><![endif]-->", "ab\n"),
        # An unclosed head ends at the first element of the body, as in a browser.
        ("<html><head><meta charset='utf-8'><p>shown", "shown\n"),
        # Blocks start on a new line; paragraphs and headings are separated by one blank line.
        ("<div>one</div><div>two</div>three", "one\ntwo\nthree\n"),
        ("<section>a</section><article>b</article><header>c</header><footer>d</footer>", "a\nb\nc\nd\n"),
        ("<h1>Title</h1><p>First.</p><p>Second.</p>", "Title\n\nFirst.\n\nSecond.\n"),
        ("<h3>Title</h3>text", "Title\n\ntext\n"),
        ("<blockquote>quoted</blockquote>after", "quoted\n\nafter\n"),
        # br is a line break; two make a blank line, more are still one.
        ("one<br>two<br/>three", "one\ntwo\nthree\n"),
        ("one<br><br>two<br><br><br><br>three", "one\n\ntwo\n\nthree\n"),
        # Lists.
        ("<ul><li>apples</li><li>pears</li></ul>", "- apples\n- pears\n"),
        ("<ol><li>first</li><li>second</li></ol>", "1. first\n2. second\n"),
        ("<ol start='4'><li>fourth<li>fifth</ol>", "4. fourth\n5. fifth\n"),
        (
            "<ul><li>fruit<ul><li>apple</li><li>pear<ol><li>conference</li></ol></li></ul></li><li>veg</li></ul>",
            "- fruit\n  - apple\n  - pear\n    1. conference\n- veg\n",
        ),
        ("<p>Intro</p><ul><li>a</li></ul><p>Outro</p>", "Intro\n\n- a\n\nOutro\n"),
        # Paragraphs inside items do not space the list out; a second one is indented under its item.
        ("<ul><li><p>one</p></li><li><p>two</p><p>more</p></li></ul>", "- one\n- two\n  more\n"),
        ("<ul><li></li><li>only</li></ul>", "- only\n"),
        # Links.
        ('<a href="https://example.com/offer">See the offer</a>', "See the offer (https://example.com/offer)\n"),
        ('<a href="https://example.com/">https://example.com/</a>', "https://example.com/\n"),
        ('<a href="https://example.com/">example.com</a>', "example.com\n"),
        ('<a href="#top">Back to top</a>', "Back to top\n"),
        ('<a href="javascript:void(0)">Click</a>', "Click\n"),
        ('<a href="mailto:help@example.com?subject=Hi">Write to us</a>', "Write to us (help@example.com)\n"),
        ('<a href="mailto:help@example.com">help@example.com</a>', "help@example.com\n"),
        ('<a href="https://example.com/x"></a>', "https://example.com/x\n"),
        ('<a name="anchor">no target</a>', "no target\n"),
        ("Read <a href='https://e.com/a'>this</a>, then that.", "Read this (https://e.com/a), then that.\n"),
        # Images show their alt text, nothing without one.
        ('<img src="logo.png" alt="ACME Corp">', "ACME Corp\n"),
        ('a<img src="spacer.gif">b', "ab\n"),
        ('<a href="https://example.com/"><img src="logo.png" alt="Home"></a>', "Home (https://example.com/)\n"),
        # Tables: the cells of a row joined; empty spacer cells leave no separator behind.
        (
            "<table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>3.50</td></tr></table>",
            "Item | Price\nTea | 3.50\n",
        ),
        ("<table><tr><td>a</td><td>&nbsp;</td><td></td><td>b</td></tr></table>", "a | b\n"),
        ("<table><tr><td>a<td>b<tr><td>c<td>d</table>", "a | b\nc | d\n"),
        # hr is a line of dashes.
        ("above<hr>below", "above\n\n" + "-" * 40 + "\n\nbelow\n"),
        # pre keeps its whitespace (without the newline that follows <pre>); elsewhere whitespace collapses.
        ("<pre>\n  indented\n\tTabbed  twice</pre>", "  indented\n\tTabbed  twice\n"),
        ("<p>  lots   of\n\n  space\t</p>", "lots of space\n"),
        ("<b>bold</b> <i>italic</i>", "bold italic\n"),
        ("no<b>space</b>here", "nospacehere\n"),
        # Entities.
        ("Fish &amp; chips &lt;3 &eacute;t&#233; &#x2603; caf&eacute;", "Fish & chips <3 été ☃ café\n"),
        ("a&nbsp;&nbsp;b", "a b\n"),
        # Nothing to show.
        ("", ""),
        ("  \n ", ""),
        ("<p></p><br><div> </div>", ""),
    ],
)
def test_rules(html: str, text: str):
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>unclosed <b>bold <div>block", "unclosed bold\nblock\n"),
        ("text</span></a></td></head></script></title>more", "textmore\n"),
        ("text</tr></table></ul></ol></pre></li>more", "text\n\nmore\n"),
        ("<ul><li>one<li>two", "- one\n- two\n"),
        ("<li>without a list", "- without a list\n"),
        ("<a href='https://e.com/'>never closed", "never closed\n"),
        ("<p>a<p>b", "a\n\nb\n"),
        ("<![foo[x]]>text", "text\n"),
        # A tag cut off by the end of the input is left as text, as the standard parser leaves it.
        ("text<div class='x", "text<div class='x\n"),
        ("a < b and c > d", "a < b and c > d\n"),
    ],
)
def test_malformed_html(html: str, text: str):
    assert html_to_text(html) == text


def test_newsletter():
    html = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>ACME news</title>
  <style>body { font-family: sans-serif; } .footer { font-size: 11px; }</style>
</head>
<body>
  <!--[if mso]><table><tr><td><![endif]-->
  <table width="100%" cellpadding="0" cellspacing="0">
    <tr>
      <td width="20">&nbsp;</td>
      <td>
        <a href="https://acme.example/"><img src="https://acme.example/logo.png" alt="ACME"></a>
        <h1>October   news</h1>
        <p>Hello Ann,<br>here is what&rsquo;s new this month.</p>
        <ol>
          <li>New <b>widgets</b></li>
          <li>Lower prices:
            <ul><li>gears &minus;10%</li><li>bolts &minus;20%</li></ul>
          </li>
        </ol>
        <table>
          <tr><th>Product</th><th>Price</th></tr>
          <tr><td>Gear</td><td>&euro;9</td></tr>
        </table>
        <p><a href="https://acme.example/shop?utm_source=news">Shop now</a></p>
        <hr>
        <p class="footer">
          You receive this because you signed up.
          <a href="https://acme.example/unsubscribe?u=42">Unsubscribe</a> |
          <a href="mailto:help@acme.example">help@acme.example</a>
        </p>
      </td>
      <td width="20">&nbsp;</td>
    </tr>
  </table>
  <script>track();</script>
</body>
</html>
"""
    assert html_to_text(html) == (
        "ACME (https://acme.example/)\n"
        "\n"
        "October news\n"
        "\n"
        "Hello Ann,\n"
        "here is what’s new this month.\n"
        "\n"
        "1. New widgets\n"
        "2. Lower prices:\n"
        "  - gears −10%\n"
        "  - bolts −20%\n"
        "\n"
        "Product | Price\n"
        "Gear | €9\n"
        "\n"
        "Shop now (https://acme.example/shop?utm_source=news)\n"
        "\n"
        "----------------------------------------\n"
        "\n"
        "You receive this because you signed up. Unsubscribe (https://acme.example/unsubscribe?u=42) |"
        " help@acme.example\n"
    )


def _assert_tidy(text: str) -> None:
    if text:
        assert text.endswith("\n") and not text.startswith("\n") and "\n\n\n" not in text
        assert all(line == line.rstrip() for line in text.split("\n"))


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
@example("<![foo[")
@example("<!-- unclosed")
@example("<script>unclosed")
@example("&#xFFFFFFFF; &#0; &#55296;")
def test_never_raises_on_arbitrary_text(text: str):
    _assert_tidy(html_to_text(text))


SYNTAX = ["<", ">", "</", "<!", "<!--", "-->", "<![", "]]>", "<?", "&", "&#", ";", "=", "'", '"', " ", "\n", "\r"]
TAGS = ["<p>", "</p>", "<li>", "<ol>", "</ul>", "<pre>", "</pre>", "<a href=", "</a>", "<td>", "<tr>", "<table>"]
OTHERS = ["<script>", "</script>", "<head>", "<title>", "<br/>", "<img alt=", "<hr>", "a", "x1", "\x00", "\u2028"]
MARKUP = st.lists(st.sampled_from([*SYNTAX, *TAGS, *OTHERS]), max_size=40).map("".join)


@settings(max_examples=1500, deadline=None)
@given(MARKUP)
def test_never_raises_on_broken_markup(html: str):
    _assert_tidy(html_to_text(html))


PLAIN = st.text(st.characters(blacklist_characters="<&", blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=500, deadline=None)
@given(PLAIN)
def test_plain_text_keeps_its_words_in_order(text: str):
    assert html_to_text(text).split() == text.split()


WORD = st.text(st.sampled_from("abcXYZ019.,!?é"), min_size=1, max_size=12)
WORDS = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
INLINE_AND_BLOCK = st.sampled_from(
    ["p", "div", "b", "i", "span", "li", "td", "h2", "a", "strong", "em", "blockquote", "pre"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(INLINE_AND_BLOCK, WORDS), min_size=1, max_size=8))
def test_simple_tagged_text_leaves_no_tag_behind(parts: list[tuple[str, str]]):
    html = "".join(f"<{tag}>{words}</{tag}>" for tag, words in parts)
    text = html_to_text(html)
    assert not re.search(r"</?[a-z]+>", text)
    # Items and cells add their markers, inline elements join their words; all the letters are there, in order.
    shown = "".join(word for word in text.split() if word not in ("-", "|"))
    assert shown == "".join(words.replace(" ", "") for _, words in parts)
