import gzip
import hashlib
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_metaedit.datasets import (
    load_adult,
    load_german_credit,
    make_biased_classification,
    make_preprocessor,
)


def _bundled_sha256(name):
    path = resources.files("sklearn_metaedit.datasets").joinpath("data", name)
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def test_bundled_files_are_the_original_uci_files():
    # the checksums published with the offline copy of the UCI files
    assert _bundled_sha256("adult.data.csv.gz") == (
        "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
    )
    license_text = resources.files("sklearn_metaedit.datasets").joinpath("data", "DATA_LICENSE")
    assert "CC BY 4.0" in license_text.read_text()


def test_adult_official_split_sizes_and_positive_rates():
    train, test = load_adult(split="train"), load_adult(split="test")
    assert train.data.shape == (32561, 14) and test.data.shape == (16281, 14)
    # the UCI description: 24.08% of the training rows and 23.62% of the test rows earn >50K
    assert train.target.sum() == 7841 and test.target.sum() == 3846
    assert set(train.target.unique()) == {0, 1}
    assert list(train.sensitive.columns) == ["sex", "race"]
    assert train.sensitive["race"].nunique() == 5
    assert "CC BY 4.0" in train.DESCR
    everything = load_adult(split="all")
    assert len(everything.data) == 48842
    pd.testing.assert_frame_equal(everything.data.iloc[32561:].reset_index(drop=True), test.data)


def test_adult_splits_share_categories():
    train, test = load_adult(split="train"), load_adult(split="test")
    for column in train.data.select_dtypes("category"):
        assert list(train.data[column].cat.categories) == list(test.data[column].cat.categories)


def test_adult_missing_values_are_nan():
    data = load_adult(split="all").data
    assert data.isna().any(axis=1).sum() == 3620


def test_return_X_y():
    X, y = load_adult(split="test", return_X_y=True)
    assert X.shape == (16281, 14) and len(y) == 16281
    X, y = load_german_credit(return_X_y=True)
    assert X.shape == (1000, 20) and y.sum() == 700


def test_german_credit_sensitive_attributes_follow_attribute_9_and_age():
    german = load_german_credit()
    female = german.data["personal_status_sex"].isin(["A92", "A95"])
    assert (german.sensitive["sex"].eq("female") == female).all()
    assert (german.sensitive["age_group"].eq("<=25") == (german.data["age"] <= 25)).all()
    assert german.target.value_counts().to_dict() == {1: 700, 0: 300}


def test_bad_split_is_a_clear_error():
    with pytest.raises(ValueError, match="split must be"):
        load_adult(split="validation")


def test_preprocessor_gives_float32_drops_columns_and_fits_in_a_pipeline():
    adult = load_adult(split="test")
    pre = make_preprocessor(drop=("sex", "race"))
    Xt = pre.fit_transform(adult.data)
    assert Xt.dtype == np.float32 and np.isfinite(Xt).all()
    names = pre.get_feature_names_out()
    assert not any(n.startswith(("sex", "race")) for n in names)
    assert len(names) == Xt.shape[1]
    # categories unseen in fit encode as zeros instead of failing
    unseen = adult.data.head(3).copy()
    unseen["workclass"] = unseen["workclass"].cat.add_categories("Astronaut")
    unseen.loc[0, "workclass"] = "Astronaut"
    assert pre.transform(unseen).shape == (3, Xt.shape[1])
    model = make_pipeline(make_preprocessor(), LogisticRegression(max_iter=500))
    model.fit(adult.data.iloc[:4000], adult.target.iloc[:4000])
    assert model.score(adult.data.iloc[4000:8000], adult.target.iloc[4000:8000]) > 0.8


def test_biased_classification_bias_controls_the_gap():
    X, y, groups = make_biased_classification(4000, 6, n_groups=3, bias=2.0, random_state=0)
    assert X.shape == (4000, 6) and X.dtype == np.float32
    rates = [y[groups == g].mean() for g in range(3)]
    assert rates[0] < rates[1] < rates[2]
    _, y0, g0 = make_biased_classification(4000, 6, n_groups=3, bias=0.0, random_state=0)
    rates0 = [y0[g0 == g].mean() for g in range(3)]
    assert max(rates0) - min(rates0) < 0.06
    again = make_biased_classification(4000, 6, n_groups=3, bias=2.0, random_state=0)
    np.testing.assert_array_equal(again[0], X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_groups": 1}, "n_groups"), ({"n_features": 1}, "n_features"), ({"bias": np.nan}, "bias")],
)
def test_biased_classification_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_biased_classification(**kwargs)
