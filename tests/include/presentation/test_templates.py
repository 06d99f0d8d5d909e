"""One Jinja2 environment: HTML autoescaped, Markdown and text not; formatters are filters; no silent blanks."""

from __future__ import annotations

import jinja2
import pytest

from include.reserving.presentation.templating import ENV, markdown_text, render


def test_login_page_escapes_what_it_is_given():
    page = render("login.html", detail="<b>Not authenticated</b>", login='/auth/login?next="><script>x</script>')
    assert "<script>" not in page and "<b>Not" not in page
    assert "&lt;b&gt;Not authenticated&lt;/b&gt;: this page needs an Airflow session." in page
    assert 'href="/auth/login?next=&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in page


def test_html_is_autoescaped_markdown_and_text_are_not():
    assert ENV.autoescape("page.html") and ENV.autoescape("email_report.html")
    assert not ENV.autoescape("model_card.md") and not ENV.autoescape("note.txt")


def test_formatters_are_filters_with_one_missing_value():
    template = ENV.from_string("{{ a | money }} {{ b | money }} {{ c | duration }} {{ d | day }} {{ e | pvalue }}")
    assert (
        template.render(a=1234.5, b=None, c=755, d="2024-02-29", e=0.00001)
        == "1,234.50 n/a 0:12:35 2024-02-29 &lt;0.0001"  # strings escape as HTML does
    )


def test_a_missing_context_value_is_an_error_not_a_blank():
    with pytest.raises(jinja2.UndefinedError):
        render("login.html", detail="Not authenticated")


def test_markdown_text_escapes_markup_characters_only():
    assert markdown_text("a|b <i>*x*</i> [l] `c` \\") == "a\\|b \\<i\\>\\*x\\*\\</i\\> \\[l\\] \\`c\\` \\\\"
    assert markdown_text("xgb_development-20231231 (1.5%)") == "xgb_development-20231231 (1.5%)"
