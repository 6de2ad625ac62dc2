import pytest

from core.language import CJK, LATIN, NONE, script_of


@pytest.mark.parametrize("text, script", [
    ("cordless drill", LATIN),
    ("Kestrel 20V Cordless Drill/Driver Kit", LATIN),
    ("手机推荐", CJK),
    ("给老人用的大字手机", CJK),
    ("小禾 A5 老人手机", CJK),
    ("iphone 手机壳", CJK),  # the Chinese words are what the English models cannot read
    ("ワイヤレスイヤホン", CJK),
    ("무선 이어폰", CJK),
    ("Voltra X12 Smartphone 128GB 蓝", LATIN),  # one Han character among 22 letters
    ("café crème", LATIN),
    ("１２３", NONE),  # full-width digits, no letters
    ("", NONE),
    ("  -- ", NONE),
])
def test_script_of(text, script):
    assert script_of(text) == script
