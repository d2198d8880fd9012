"""The three dataset readers on fixtures in their published formats: counts, labels, quirks, errors."""

import numpy as np
import pandas as pd
import pytest
from fixtures_readers import (
    CELEBA_ATTRIBUTES,
    DF_ATTRIBUTES,
    DF_CATEGORIES,
    DF_COUNTS,
    PRODUCT_CORRUPT_ID,
    PRODUCT_MISSING_IMAGE_ID,
    PRODUCT_RARE_ID,
    write_celeba,
    write_deepfashion,
    write_fashion_products,
)

from fashionlab.data.readers.celeba_style import (
    celeba_style_table,
    derive_styles,
    read_celeba_attributes,
    read_celeba_partition,
)
from fashionlab.data.readers.deepfashion import (
    deepfashion_table,
    read_attr_cloth,
    read_attr_img,
    read_category_cloth,
    read_category_img,
)
from fashionlab.data.readers.fashion_products import products_table, read_styles_csv
from fashionlab.data.table.balance import rare_classes
from fashionlab.data.table.cap import cap_labels as balance_styles
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError

FOUR = ["masterCategory", "subCategory", "baseColour", "gender"]
STYLE_RULES = {
    "formal": {"any_of": ["Wearing_Necktie", "Heavy_Makeup"]},
    "intellectual": {"all_of": ["Eyeglasses"]},
    "casual": {"any_of": ["Wearing_Hat"], "none_of": ["Wearing_Necktie"]},
}


# --- Fashion Product Images ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def products(tmp_path_factory):
    root = tmp_path_factory.mktemp("products")
    return root, write_fashion_products(root)


def test_styles_csv_recovers_rows_with_commas(products):
    root, expected = products
    table, recovered = read_styles_csv(root / "myntradataset" / "styles.csv")
    assert len(table) == expected["rows"]
    assert recovered == expected["malformed_lines"]
    names = table.set_index("id")["productDisplayName"]
    assert names["39403"] == "Lino Perros Women, Brown Watch"
    assert names["39404"] == "Puma Men, Black, Sneakers"
    assert table.set_index("id").loc["39404", "usage"] == "Casual"
    # empty cells are unknown labels, not empty strings
    assert table["baseColour"].isna().sum() == expected["empty_colour"]
    assert table["season"].isna().sum() == expected["empty_season"]
    assert table["usage"].isna().sum() == expected["empty_usage"]
    assert table["year"].isna().any()
    assert table.set_index("id").loc["10002", "line"] == 4


def test_styles_csv_short_row_names_file_and_line(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
                    "productDisplayName\n1,Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual,Tee\n"
                    "2,Men,Apparel,Topwear,Tshirts,Black,Summer\n")
    with pytest.raises(DataFormatError, match=r"styles\.csv:3: expected 10 fields, got 7"):
        read_styles_csv(path)


def test_styles_csv_extra_fields_only_recovered_for_a_free_text_last_column(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("id,gender,masterCategory,subCategory,articleType,baseColour,season,usage,"
                    "productDisplayName,year\n1,Men,Apparel,Topwear,Tshirts,Black,Summer,Casual,A, B,2012\n")
    with pytest.raises(DataFormatError, match=r"styles\.csv:2: expected 10 fields, got 11"):
        read_styles_csv(path)


def test_styles_csv_bad_and_repeated_ids(tmp_path):
    head = ("id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
            "productDisplayName\n")
    path = tmp_path / "styles.csv"
    path.write_text(head + "x1,Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual,Tee\n")
    with pytest.raises(DataFormatError, match=r"styles\.csv:2: id 'x1' is not a number"):
        read_styles_csv(path)
    row = "7,Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual,Tee\n"
    path.write_text(head + row + row)
    with pytest.raises(DataFormatError, match=r"styles\.csv:3: id 7 repeats line 2"):
        read_styles_csv(path)


def test_products_table_skips_missing_images_and_keeps_the_rest(products):
    root, expected = products
    table, report = products_table(root, FOUR)
    assert report["missing_images"] == [str(PRODUCT_MISSING_IMAGE_ID)]
    assert len(table) == expected["rows"] - 1 == report["images"]
    assert list(table.columns) == ["path", "id", "source", *FOUR]
    assert table["masterCategory"].value_counts().to_dict() == expected["master"]
    # the corrupt image is listed: the base data module's image check handles it
    assert PRODUCT_CORRUPT_ID in table["id"].tolist()
    row = table.set_index("id").loc[39404]
    assert row["source"] == f"styles.csv:{expected['malformed_lines'][1]}"
    assert row["path"].endswith("myntradataset/images/39404.jpg")
    assert report["unknown_labels"]["baseColour"] == expected["empty_colour"]
    assert report["recovered_rows"] == expected["malformed_lines"]


def test_products_missing_image_as_error(products):
    root, _ = products
    with pytest.raises(DataNotFoundError, match=rf"images/{PRODUCT_MISSING_IMAGE_ID}\.jpg"):
        products_table(root, FOUR, missing_images="error")


@pytest.mark.parametrize(("action", "rows_lost", "label"), [("merge", 0, "other"), ("ignore", 0, None),
                                                             ("drop", 1, "gone")])
def test_products_rare_classes(products, action, rows_lost, label):
    root, expected = products
    table, _ = products_table(root, ["masterCategory"])
    table, handled = rare_classes(table, "masterCategory", 2, action)  # the data.balance step
    assert handled == {"Free Items": 1}
    assert len(table) == expected["rows"] - 1 - rows_lost
    if label != "gone":
        value = table.set_index("id").loc[PRODUCT_RARE_ID, "masterCategory"]
        assert value == label if label else pd.isna(value)
    else:
        assert PRODUCT_RARE_ID not in table["id"].tolist()


def test_rare_classes_unknown_action():
    with pytest.raises(ConfigError, match=r"data\.balance\.rare"):
        rare_classes(pd.DataFrame({"a": ["x", "y", "y"]}), "a", 2, "fold")


def test_products_layouts_are_found(tmp_path):
    write_fashion_products(tmp_path / "archive", layout="fashion-dataset", n=4)
    table, report = products_table(tmp_path / "archive", FOUR)
    assert report["styles_file"] == str(tmp_path / "archive" / "fashion-dataset" / "styles.csv")
    assert len(table) == 4 + 2 + 1 + 1  # regular, recovered, corrupt (checked later), rare
    table, _ = products_table(tmp_path / "archive", FOUR, layout="fashion-dataset")
    assert len(table) == 8
    with pytest.raises(DataNotFoundError, match=r"styles\.csv not found; looked in \S*/myntradataset\."):
        products_table(tmp_path / "archive", FOUR, layout="myntradataset")


def test_products_full_layout_and_errors(tmp_path):
    write_fashion_products(tmp_path / "full", layout="", n=8)
    table, _ = products_table(tmp_path / "full", ["articleType", "season"])
    assert table["path"].iloc[0] == str(tmp_path / "full" / "images" / "10000.jpg")
    with pytest.raises(ConfigError, match=r"data\.tasks\.colour: not a styles\.csv label column"):
        products_table(tmp_path / "full", ["colour"])
    with pytest.raises(DataNotFoundError, match=r"styles\.csv not found; looked in .*myntradataset"):
        products_table(tmp_path / "nowhere", FOUR)
    with pytest.raises(DataNotFoundError, match=r"full/pics: image folder not found"):
        products_table(tmp_path / "full", FOUR, images_dir="pics")


# --- DeepFashion --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deepfashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepfashion")
    return root, write_deepfashion(root)


def test_deepfashion_list_files(deepfashion):
    root, expected = deepfashion
    categories = read_category_cloth(root / "Anno/list_category_cloth.txt")
    assert categories[3] == ("Button-Down", "upper") and categories[-1] == ("Jumpsuit", "full")
    attributes = read_attr_cloth(root / "Anno/list_attr_cloth.txt")
    assert attributes[1] == ("abstract chevron", "texture")
    assert attributes[4] == ("faux leather", "fabric")
    labels = read_category_img(root / "Anno/list_category_img.txt", len(categories))
    # labels are 1-based: the first images belong to category 1 (Anorak)
    assert labels["label"].iloc[0] == 1
    assert np.bincount(labels["label"], minlength=len(DF_CATEGORIES) + 1)[1:].tolist() == DF_COUNTS
    images, values = read_attr_img(root / "Anno/list_attr_img.txt", len(attributes))
    assert values.shape == (sum(DF_COUNTS), len(DF_ATTRIBUTES)) and values.dtype == np.int8
    assert images == expected["images"]
    first = [a for (a, _), v in zip(DF_ATTRIBUTES, values[0], strict=True) if v == 1]
    assert first == expected["attrs"][images[0]]


def test_deepfashion_table_body_parts_and_attribute_groups(deepfashion):
    root, expected = deepfashion
    table, groups = deepfashion_table(root, body_parts=["upper", "full"],
                                      attribute_groups=["texture", "part"])
    kept = {name for (name, part), count in zip(DF_CATEGORIES, DF_COUNTS, strict=True)
            if count and part in (1, 3)}
    assert set(table["category"]) == kept == {"Anorak", "Blouse", "Button-Down", "Dress", "Jumpsuit"}
    assert len(table) == 6 + 9 + 2 + 10 + 4
    assert groups == {"texture": ["abstract chevron", "floral"], "part": ["v-neck", "zip up"]}
    for _, row in table.iterrows():
        assert row["category"] == expected["labels"][row["id"]]
        assert row["texture"] + row["part"] == [a for a in expected["attrs"][row["id"]]
                                                if a in groups["texture"] + groups["part"]]
    assert set(table["split"]) == {"train", "val", "test"}
    assert table["path"].iloc[0] == str(root / expected["images"][0])
    assert table["source"].iloc[0] == "list_eval_partition.txt:3"
    assert table.set_index("id").loc[expected["images"][-1], "body_part"] == "full"


def test_deepfashion_zero_values_read_as_absent(tmp_path):
    expected = write_deepfashion(tmp_path, zero_values=True)
    images, values = read_attr_img(tmp_path / "Anno/list_attr_img.txt", len(DF_ATTRIBUTES))
    assert (values == 0).any()
    table, _ = deepfashion_table(tmp_path, attribute_groups=["fabric"])
    row = table.set_index("id").loc[images[0]]
    assert row["fabric"] == [a for a in expected["attrs"][images[0]] if a in ("denim", "faux leather")]


def _replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_deepfashion_count_and_row_errors(tmp_path):
    write_deepfashion(tmp_path)
    anno = tmp_path / "Anno"
    _replace_line(anno / "list_category_img.txt", 1, "289222")
    with pytest.raises(DataFormatError, match=r"list_category_img\.txt:1: the count line declares 289222 "
                                              r"rows but the file holds 42"):
        deepfashion_table(tmp_path)
    _replace_line(anno / "list_category_img.txt", 1, "42")
    _replace_line(anno / "list_category_img.txt", 5, "img/x/img_1.jpg   51")
    with pytest.raises(DataFormatError, match=r"list_category_img\.txt:5: category label 51 outside 1\.\.8"):
        deepfashion_table(tmp_path)
    write_deepfashion(tmp_path)
    _replace_line(anno / "list_attr_img.txt", 7, "img/x/img_1.jpg 1 -1 1")
    with pytest.raises(DataFormatError, match=r"list_attr_img\.txt:7: expected an image name and 10 "
                                              r"attribute values, got 3"):
        deepfashion_table(tmp_path, attribute_groups=["style"])
    write_deepfashion(tmp_path)
    _replace_line(anno / "list_attr_cloth.txt", 4, "floral                       9")
    with pytest.raises(DataFormatError, match=r"list_attr_cloth\.txt:4: attribute type '9' of 'floral'"):
        deepfashion_table(tmp_path, attribute_groups=["style"])
    write_deepfashion(tmp_path)
    _replace_line(tmp_path / "Eval/list_eval_partition.txt", 3, "img/x/img_1.jpg   training")
    with pytest.raises(DataFormatError, match=r"list_eval_partition\.txt:3: evaluation status 'training'"):
        deepfashion_table(tmp_path)
    with pytest.raises(ConfigError, match=r"data\.body_parts: unknown body part\(s\) 'torso'"):
        deepfashion_table(tmp_path, body_parts=["torso"])
    with pytest.raises(DataNotFoundError, match=r"nowhere/Eval/list_eval_partition\.txt: file not found"):
        deepfashion_table(tmp_path / "nowhere")


# --- CelebA styles ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, write_celeba(root)


def test_celeba_attribute_and_partition_files(celeba):
    root, expected = celeba
    attributes = read_celeba_attributes(root / "list_attr_celeba.txt")
    assert list(attributes.columns) == CELEBA_ATTRIBUTES and len(attributes) == 60
    assert attributes.loc["000007.jpg"].tolist() == expected["values"]["000007.jpg"].tolist()
    partition = read_celeba_partition(root / "list_eval_partition.txt")
    assert partition.value_counts().to_dict() == {"train": 36, "val": 12, "test": 12}
    assert partition["000004.jpg"] == "val" and partition["000005.jpg"] == "test"


def test_celeba_styles_follow_the_rules(celeba):
    root, _ = celeba
    attributes = read_celeba_attributes(root / "list_attr_celeba.txt")
    styles = derive_styles(attributes, STYLE_RULES)
    i = np.arange(60)
    assert styles["formal"].tolist() == (i % 3 == 0).tolist()
    assert styles["intellectual"].tolist() == (i % 3 == 1).tolist()
    assert styles["casual"].tolist() == ((i % 4 == 2) & (i % 3 != 0)).tolist()
    with pytest.raises(ConfigError, match=r"data\.styles\.formal\.any_of: unknown CelebA attribute 'Tie'"):
        derive_styles(attributes, {"formal": {"any_of": ["Tie"]}})
    with pytest.raises(ConfigError, match=r"data\.styles\.formal: unknown key\(s\) anyof"):
        derive_styles(attributes, {"formal": {"anyof": ["Eyeglasses"]}})


def test_celeba_balancing(celeba):
    root, _ = celeba
    attributes = read_celeba_attributes(root / "list_attr_celeba.txt")
    styles = derive_styles(attributes, STYLE_RULES)
    keep, report = balance_styles(styles, "min", unlabelled=0, seed=0)
    rarest = min(report["positives_before"].values())
    assert rarest == report["positives_before"]["casual"] == 10
    assert max(report["positives_after"].values()) <= rarest
    assert min(report["positives_after"].values()) >= rarest - 2
    assert styles.iloc[keep].any(axis=1).all()
    again, _ = balance_styles(styles, "min", unlabelled=0, seed=0)
    assert keep.tolist() == again.tolist()
    keep_all, report = balance_styles(styles, None, unlabelled=1.0, seed=0)
    labelled = int(styles.any(axis=1).sum())
    assert report["unlabelled_kept"] == min(labelled, 60 - labelled) == 15
    assert len(keep_all) == labelled + 15 == 60
    _, report = balance_styles(styles, 4, unlabelled=3, seed=1)
    assert max(report["positives_after"].values()) <= 4 and report["unlabelled_kept"] == 3


def test_celeba_style_table(celeba):
    root, _ = celeba
    table, report = celeba_style_table(root, STYLE_RULES)
    assert list(table.columns) == ["path", "split", "id", "source", "style"]
    row = table.set_index("id").loc["000001.jpg"]
    assert row["style"] == ["formal"] and row["split"] == "train"
    assert row["path"] == str(root / "img_align_celeba" / "000001.jpg")
    assert row["source"] == "list_attr_celeba.txt:3"
    assert table.set_index("id").loc["000011.jpg", "style"] == ["intellectual", "casual"]
    assert table.set_index("id").loc["000015.jpg", "style"] == ["casual"]
    assert len(table) == report["images"] == 60


def test_celeba_errors(tmp_path):
    write_celeba(tmp_path, n=6)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:4], lines[4] + " 1", *lines[5:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"list_attr_celeba\.txt:5: expected an image name and 40 "
                                              r"attribute values, got 41"):
        celeba_style_table(tmp_path, STYLE_RULES)
    path.write_text("\n".join(["7", *lines[1:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"list_attr_celeba\.txt:1: the count line declares 7"):
        celeba_style_table(tmp_path, STYLE_RULES)
    (tmp_path / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"list_attr_celeba\.txt not found; looked for .*Anno"):
        celeba_style_table(tmp_path, STYLE_RULES)


def test_deepfashion_attribute_values_other_than_1_0_minus1_name_the_line(tmp_path):
    write_deepfashion(tmp_path)
    path = tmp_path / "Anno/list_attr_img.txt"
    lines = path.read_text().splitlines()
    name = lines[5].split()[0]
    _replace_line(path, 6, name + "   " + " ".join(["2"] + ["-1"] * (len(DF_ATTRIBUTES) - 1)))
    with pytest.raises(DataFormatError, match=r"list_attr_img\.txt:6: attribute value '2' is not 1, -1 or 0"):
        read_attr_img(path, len(DF_ATTRIBUTES))
