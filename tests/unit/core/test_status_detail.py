"""status_detail: a status message short enough for gRPC's metadata limit."""

from core.errors import MAX_DETAIL_BYTES, InvalidRequest, status_detail


def test_a_short_message_is_kept_whole():
    assert status_detail(InvalidRequest("unknown filter field 'colour'")) == "unknown filter field 'colour'"


def test_a_long_message_is_cut_to_the_bound_and_says_so():
    detail = status_detail("x" * 20_000)
    assert len(detail.encode("utf-8")) <= MAX_DETAIL_BYTES
    assert detail.startswith("xxx") and detail.endswith("(cut: the message had 20000 bytes)")


def test_a_cut_never_splits_a_character():
    detail = status_detail("手机" * 5_000)
    assert len(detail.encode("utf-8")) <= MAX_DETAIL_BYTES
    assert "\ufffd" not in detail and detail.startswith("手机手机")
