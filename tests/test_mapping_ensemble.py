"""Mapping ensemble, calibration, label hierarchy and accuracy card (issue #14)."""

import numpy as np
import pandas as pd
import pytest

from hscseq.fidelity import _ensemble as ens
from hscseq.fidelity import hierarchy as hier


def test_load_hierarchy_and_roll_up(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text("child\tparent\n# comment\nCD4 naive\tCD4 T\nCD4 mem\tCD4 T\nCD4 T\tT\nCD8 T\tT\n")
    h = hier.load_hierarchy(path)
    assert h == {"CD4 naive": "CD4 T", "CD4 mem": "CD4 T", "CD4 T": "T", "CD8 T": "T"}
    labels = ["CD4 naive", "CD8 T", "novel", "CD4 T (uncertain)", "T"]
    assert list(hier.roll_up(labels, h, 0)) == ["CD4 naive", "CD8 T", "novel", "CD4 T", "T"]
    assert list(hier.roll_up(labels, h, 1)) == ["CD4 T", "T", "novel", "CD4 T", "T"]
    assert list(hier.roll_up(labels, h, 2)) == ["T", "T", "novel", "T", "T"]
    assert list(hier.roll_up(labels, h, "root")) == ["T", "T", "novel", "T", "T"]
    s = hier.roll_up(pd.Series(labels, index=list("abcde")), h, "root")
    assert list(s.index) == list("abcde")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\tb\na\tc\n", "two parents"),
        ("a\tb\nb\ta\n", "cycle"),
        ("a\tb\tc\n", "columns"),
    ],
)
def test_bad_hierarchy_names_file_and_fix(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        hier.load_hierarchy(path)
    assert str(path) in str(err.value)


def test_build_hierarchy_groups_close_types_only():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 200))
    centroids = np.vstack([base[0], base[0] + 0.05 * rng.normal(size=200), base[1], base[2]])
    h = hier.build_hierarchy(centroids, ["A1", "A2", "B", "C"], max_distance=0.1)
    assert h == {"A1": "A1/A2", "A2": "A1/A2"}


def test_resolve_labels_uncertain_parent():
    classes = ["A1", "A2", "B"]
    h = {"A1": "A", "A2": "A"}
    probs = np.array([[0.9, 0.05, 0.05], [0.48, 0.47, 0.05], [0.45, 0.2, 0.35], [0.1, 0.1, 0.8]])
    labels, coarse = hier.resolve_labels(probs, classes, h, min_probability=0.5, min_parent_probability=0.9)
    assert list(labels) == ["A1", "A (uncertain)", "A1", "B"]
    assert list(coarse) == [False, True, False, False]


def test_pool_weights_prefer_the_informative_member_and_calibrate():
    rng = np.random.default_rng(1)
    n, k = 3000, 4
    codes = rng.integers(0, k, n)
    good = np.full((n, k), 0.05)
    good[np.arange(n), codes] = 0.85
    flip = rng.random(n) < 0.2  # the "good" member is right 80% of the time but claims 85%
    good[flip] = np.roll(good[flip], 1, axis=1)
    noise = rng.dirichlet(np.ones(k), n)
    w = ens.fit_pool_weights([good, noise], codes)
    assert w[0] > 5 * w[1]
    folds = rng.integers(0, 5, n)
    pooled, _ = ens.cross_fitted_pool([good, noise], codes, folds)
    assert ens.expected_calibration_error(pooled, codes) < 0.03
    assert ens.expected_calibration_error(good, codes) > 0.04


def test_balanced_knn_does_not_outvote_a_rare_type():
    # 10 rare cells inside a halo of 200 common cells: plain majority would call the rare centre common
    rng = np.random.default_rng(2)
    common = rng.normal(0, 1.0, size=(200, 2))
    rare = rng.normal(0, 0.1, size=(10, 2))
    train = np.vstack([common, rare])
    codes = np.array([0] * 200 + [1] * 10)
    probs = ens.balanced_knn_proba(train, codes, np.zeros((1, 2)), 2, n_neighbors=15)
    assert probs[0, 1] > 0.5
