from hemovision_contracts import OUT_OF_DISTRIBUTION_REASONS, REVIEW_REASONS, confidence_holds


def test_every_ood_reason_is_a_known_reason():
    assert OUT_OF_DISTRIBUTION_REASONS <= set(REVIEW_REASONS)


def test_confidence_holds_only_without_ood_reasons():
    assert confidence_holds([])
    assert confidence_holds(["low_confidence"])
    for reason in OUT_OF_DISTRIBUTION_REASONS:
        assert not confidence_holds(["low_confidence", reason])


def test_pixel_pipeline_reasons_are_known():
    from hemovision_pixels import REVIEW_REASONS as PIXEL_REASONS

    assert set(PIXEL_REASONS) <= set(REVIEW_REASONS)
