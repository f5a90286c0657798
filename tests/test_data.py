import random

import numpy as np
import pytest
import torch
from PIL import Image

from densecell.data import (
    Cityscapes,
    DataError,
    EvalTransform,
    FolderDataset,
    PascalVOC,
    PersonPart,
    TrainTransform,
    build_dataset,
)
from densecell.data.cityscapes import train_classes, train_id_to_label_id
from densecell.models.backbones import resolve_normalization
from helpers import write_cityscapes, write_folder, write_person_part, write_sbd, write_voc

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


def label_map(values, size=(16, 32)):
    """A label map made of vertical stripes of the given values."""
    array = np.zeros(size, dtype=np.uint8)
    for i, value in enumerate(values):
        array[:, i * size[1] // len(values):(i + 1) * size[1] // len(values)] = value
    return array


# ---- Cityscapes ---------------------------------------------------------------------------------------------------

@pytest.fixture
def cityscapes(tmp_path):
    # labelIds: 0 unlabeled (ignore), 7 road (0), 26 car (13), 33 bicycle (18), 4 static (ignore)
    return write_cityscapes(tmp_path / "cityscapes", {
        "train": [label_map([0, 7, 26, 33]), label_map([7, 4])],
        "val": [label_map([24, 25])],
        "test": [None],
    })


def test_the_packaged_label_table_is_cityscapesscripts_own():
    """The core carries Cityscapes' label table as data; the test extra installs cityscapesscripts to hold it to it."""
    from cityscapesscripts.helpers.labels import labels

    from densecell.data.cityscapes import cityscapes_labels

    assert [(label.name, label.id, label.trainId, tuple(label.color)) for label in labels] == [
        tuple(row) for row in cityscapes_labels()]


def test_cityscapes_maps_label_ids_to_train_ids(cityscapes):
    classes, palette = train_classes()
    assert len(classes) == 19 and classes[0] == "road" and classes[18] == "bicycle"
    assert palette[0] == (128, 64, 128)
    data = Cityscapes(cityscapes, "train")
    assert len(data) == 2 and data.num_classes == 19
    image, label = data.load(0)
    assert image.shape == (16, 32, 3)
    assert label[0].tolist() == [255] * 8 + [0] * 8 + [13] * 8 + [18] * 8
    assert set(np.unique(data.load(1)[1])) == {0, 255}
    assert np.unique(Cityscapes(cityscapes, "val").load(0)[1]).tolist() == [11, 12]


def test_cityscapes_trainval_and_coarse_extra_in_one_split(cityscapes):
    """The paper's test model trained on fine train + val and the coarse train_extra images (gtCoarse only)."""
    write_cityscapes(cityscapes, {"train_extra": [label_map([26, 0]), label_map([7])]}, annotation="gtCoarse",
                     seed=3)
    assert len(Cityscapes(cityscapes, "trainval")) == 3
    data = Cityscapes(cityscapes, "trainval+train_extra")
    assert len(data) == 5
    labels = [str(s.label) for s in data.samples]
    assert sum("gtFine" in name for name in labels) == 3 and sum("gtCoarse_labelIds" in name for name in labels) == 2
    assert set(np.unique(data.load(3)[1])) == {13, 255}
    next((cityscapes / "gtCoarse" / "train_extra").rglob("*.png")).unlink()
    with pytest.raises(DataError, match="gtCoarse/train_extra"):  # it has no fine labels: always read coarse
        Cityscapes(cityscapes, "train_extra")


def test_cityscapes_test_split_needs_no_labels(cityscapes):
    _, label = Cityscapes(cityscapes, "test").load(0)
    assert (label == 255).all()


def test_train_id_to_label_id_inverts_the_table():
    lut = train_id_to_label_id()
    assert lut[0] == 7 and lut[13] == 26 and lut[18] == 33


def test_cityscapes_errors_name_the_file(cityscapes):
    with pytest.raises(DataError, match="leftImg8bit/train_extra: folder not found"):
        Cityscapes(cityscapes, "train_extra")
    with pytest.raises(DataError, match="unknown Cityscapes split 'trainvalextra'"):
        Cityscapes(cityscapes, "trainvalextra")
    label = next((cityscapes / "gtFine" / "train").rglob("*.png"))
    label.unlink()
    with pytest.raises(DataError, match=r"_leftImg8bit.png: no label \(expected .*gtFine_labelIds.png\)"):
        Cityscapes(cityscapes, "train")


@pytest.mark.parametrize("damage,message", [
    ("truncate_image", "corrupt or unreadable image"),
    ("text_image", "corrupt or unreadable image"),
    ("bad_values", r"label values \[200\] are neither classes"),
    ("size", "label is 10x8 but its image"),
    ("rgb_label", "single-channel"),
])
def test_bad_files_give_one_line_errors_naming_them(cityscapes, damage, message):
    image = sorted((cityscapes / "leftImg8bit" / "val").rglob("*.png"))[0]
    label = sorted((cityscapes / "gtFine" / "val").rglob("*.png"))[0]
    if damage == "truncate_image":
        image.write_bytes(image.read_bytes()[:60])
    elif damage == "text_image":
        image.write_text("not a png")
    elif damage == "bad_values":
        Image.fromarray(label_map([7, 200])).save(label)
    elif damage == "size":
        Image.fromarray(np.full((8, 10), 7, dtype=np.uint8)).save(label)
    else:
        Image.fromarray(np.zeros((16, 32, 3), dtype=np.uint8)).save(label)
    data = Cityscapes(cityscapes, "val")
    with pytest.raises(DataError, match=message) as info:
        data[0]
    assert str(info.value).startswith(str(image if "image" in damage else label))
    assert "\n" not in str(info.value)


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match="the split is empty"):
        Cityscapes(tmp_path, "val")


def test_build_dataset_checks_the_root(tmp_path, cityscapes):
    with pytest.raises(DataError, match="data root not found"):
        build_dataset("cityscapes", tmp_path / "missing", "train")
    with pytest.raises(DataError, match="unknown dataset"):
        build_dataset("ade20k", cityscapes, "train")
    assert len(build_dataset("cityscapes", cityscapes, "train")) == 2


# ---- PASCAL VOC + SBD ---------------------------------------------------------------------------------------------

@pytest.fixture
def voc(tmp_path):
    labels = {
        "2007_000032": label_map([0, 1, 255, 15], (20, 24)),   # 255 = the object borders VOC marks as ignore
        "2007_000039": label_map([0, 20], (20, 24)),
        "2007_000063": label_map([0, 8], (20, 24)),
    }
    root = write_voc(tmp_path / "VOC2012", labels, {"train": ["2007_000032", "2007_000039"],
                                                    "val": ["2007_000063"],
                                                    "trainval": list(labels)})
    sbd = write_sbd(tmp_path / "SBD", root, {
        "2008_000002": label_map([0, 3], (20, 24)),
        "2008_000003": label_map([0, 5], (20, 24)),
        "2007_000063": label_map([0, 9], (20, 24)),   # in VOC val: must stay out of train_aug
        "2007_000032": label_map([0, 2], (20, 24)),   # also has a VOC label, which wins
    }, {"train": ["2008_000002", "2007_000063"], "val": ["2008_000003", "2007_000032"]})
    return root, sbd


def test_voc_reads_palette_pngs_with_ignore(voc):
    root, _ = voc
    data = PascalVOC(root, "train")
    assert data.num_classes == 21 and data.classes[15] == "person"
    assert Image.open(data.samples[0].label).mode == "P"
    assert data.load(0)[1][0].tolist() == [0] * 6 + [1] * 6 + [255] * 6 + [15] * 6
    assert len(PascalVOC(root, "trainval")) == 3


def test_voc_train_aug_merges_sbd_and_excludes_val(voc):
    root, sbd = voc
    data = PascalVOC(root, "train_aug", sbd_root=sbd)
    ids = [s.image.stem for s in data.samples]
    assert ids == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    labels = {s.image.stem: s.label for s in data.samples}
    assert labels["2007_000032"].suffix == ".png" and labels["2008_000002"].suffix == ".mat"
    assert np.unique(data.load(2)[1]).tolist() == [0, 3]
    assert np.unique(data.load(3)[1]).tolist() == [0, 5]


def test_voc_errors(voc, tmp_path):
    root, sbd = voc
    with pytest.raises(DataError, match="needs the SBD folder"):
        PascalVOC(root, "train_aug")
    with pytest.raises(DataError, match="test.txt: split file not found"):
        PascalVOC(root, "test")
    (sbd / "cls" / "2008_000003.mat").write_text("garbage")
    with pytest.raises(DataError, match="2008_000003.mat: not an SBD cls .mat file"):
        PascalVOC(root, "train_aug", sbd_root=sbd).load(3)


# ---- PASCAL-Person-Part and folders -------------------------------------------------------------------------------

def test_person_part(tmp_path):
    root = write_person_part(tmp_path / "pp", {"2008_000003": label_map([0, 1, 2, 6]),
                                               "2008_000008": label_map([0, 255])},
                             {"train": ["2008_000003"], "val": ["2008_000008"]})
    data = PersonPart(root, "train")
    assert data.classes == ("background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs")
    assert np.unique(data.load(0)[1]).tolist() == [0, 1, 2, 6]
    assert np.unique(PersonPart(root, "val").load(0)[1]).tolist() == [0, 255]
    Image.fromarray(label_map([0, 7])).save(root / "SegmentationPart" / "2008_000008.png")
    with pytest.raises(DataError, match=r"label values \[7\]"):
        PersonPart(root, "val").load(0)


def test_folder_dataset_with_its_own_ignore_index(tmp_path):
    root = write_folder(tmp_path / "mine", {"a": label_map([0, 1, 99]), "b": label_map([2])},
                        "classes: [background, crack, spall]\nignore_index: 99\n")
    data = FolderDataset(root, "train")
    assert data.classes == ("background", "crack", "spall")
    assert np.unique(data.load(0)[1]).tolist() == [0, 1, 255]
    (root / "train" / "images" / "c.jpg").write_bytes((root / "train" / "images" / "a.jpg").read_bytes())
    with pytest.raises(DataError, match=r"c.jpg: no mask \(expected .*c.png\)"):
        FolderDataset(root, "train")


@pytest.mark.parametrize("text,message", [
    ("classes: crack\n", "'classes' must be a non-empty list"),
    ("classes: [a, b]\nignore_index: 1\n", "'ignore_index' must be an integer in 2..255"),
    ("classes: [a\n", "not valid YAML"),
    ("classes: [a, b]\npalette: [[1, 2], [3, 4, 5]]\n",
     r"'palette\[0\]': each colour is 3 integers in 0..255, got \[1, 2\]"),
    ("classes: [a, b]\npalette: [[1, 2, 300], [3, 4, 5]]\n", r"'palette\[0\]'.*got \[1, 2, 300\]"),
    ("classes: [a, b, c]\npalette: red\n", "field 'palette'.*'red'"),
    ("classes: [a, b]\npalette: [[1, 2, 3]]\n", "'palette' has 1 colours for 2 classes"),
    ("classes: [a, b]\npallete: [[1, 2, 3], [4, 5, 6]]\n", "'pallete': unknown key"),
])
def test_folder_classes_file_errors(tmp_path, text, message):
    root = write_folder(tmp_path / "mine", {"a": label_map([0])}, text)
    with pytest.raises(DataError, match=message):
        FolderDataset(root, "train")


# ---- transforms ---------------------------------------------------------------------------------------------------

def test_train_transform_is_deterministic_and_pads_with_ignore():
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    label = torch.randint(0, 5, (20, 30))
    transform = TrainTransform((64, 64), 0.5, 2.0, normalization=NORMALIZATION)
    a = transform(image, label, random.Random(3))
    b = transform(image, label, random.Random(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 64, 64) and a[1].shape == (64, 64)
    assert (a[1] == 255).any()  # at most 40x60 after scaling: the rest is padding, ignored
    assert (a[0][:, a[1] == 255] == 0).all()  # padded with the mean pixel, 0 after normalisation


def test_train_transform_flips_image_and_label_together():
    columns = torch.arange(32).repeat(16, 1)
    image = torch.stack([columns.to(torch.uint8)] * 3)
    transform = TrainTransform((16, 32), 1.0, 1.0, flip=True, normalization=NORMALIZATION)
    flipped = 0
    for seed in range(20):
        out_image, out_label = transform(image, columns, random.Random(seed))
        pixel_column = (out_image[0] * 0.229 + 0.485) * 255
        assert torch.allclose(pixel_column, out_label.float(), atol=1e-3)
        flipped += int(out_label[0, 0] == 31)
    assert 0 < flipped < 20


def test_eval_transform_only_normalises(cityscapes):
    data = Cityscapes(cityscapes, "val", EvalTransform(NORMALIZATION))
    image, label = data[0]
    raw, raw_label = data.load(0)
    assert image.shape == (3, 16, 32) and image.dtype == torch.float32
    assert torch.equal(label, torch.from_numpy(raw_label).long())


def test_images_are_decoded_by_their_mode(tmp_path):
    """A 16-bit grayscale PNG reads as the same picture saved at 8 bits (PIL's own RGB conversion saturates it);
    palette PNGs through their palette; a floating-point image is refused with its mode named."""
    from densecell.data.base import read_image, read_png_label

    gray = np.random.default_rng(0).integers(0, 256, (8, 9)).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "eight.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    assert (read_image(tmp_path / "sixteen.png") == read_image(tmp_path / "eight.png")).all()
    palette = Image.fromarray(gray % 4).convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette.save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png")[gray % 4 == 1].tolist()[0] == [255, 0, 0]
    Image.fromarray(gray.astype(np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(DataError, match="float.tiff: image mode F is not supported"):
        read_image(tmp_path / "float.tiff")
    Image.fromarray((gray % 3).astype(np.uint16)).save(tmp_path / "label16.png")
    assert read_png_label(tmp_path / "label16.png").tolist() == (gray % 3).tolist()
    Image.fromarray(np.full((4, 4), 300, dtype=np.uint16)).save(tmp_path / "label300.png")
    with pytest.raises(DataError, match="16-bit label holds the value 300"):
        read_png_label(tmp_path / "label300.png")
