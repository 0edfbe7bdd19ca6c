"""The name a person gives a file is display text only: no folders, no control or path
characters, a sane length with its extension kept."""

from __future__ import annotations

import pytest

from chat.attachments.store import attachment_name_clean


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../settings.py", "settings.py"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("C:\\Users\\ada\\Report 2026.pdf", "Report 2026.pdf"),
        ("/etc/passwd", "passwd"),
        ("in\x00voice\x1b[31m.pdf", "in_voice_[31m.pdf"),
        ('a<b>c:"d"|e?f*.txt', "a_b_c_d_e_f_.txt"),
        # A right-to-left override would show this as "invoiceexe.pdf".
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("..", "file"),
        ("", "file"),
        ("   .hidden", "hidden"),
        ("Cafe\u0301.txt", "Café.txt"),  # one normal form for display and search
    ],
)
def test_names_keep_only_what_is_safe_to_show(given, kept):
    assert attachment_name_clean(given) == kept


def test_a_long_name_keeps_its_extension():
    cleaned = attachment_name_clean("x" * 500 + ".docx")
    assert len(cleaned) == 120 and cleaned.endswith("x.docx")
