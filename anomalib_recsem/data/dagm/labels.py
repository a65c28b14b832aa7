"""DAGM 2007 ``Labels.txt`` files: folder names, the row format and its parser."""

from dataclasses import dataclass
from pathlib import Path

from anomalib_recsem.data.validation import DataValidationError

LABELS_FILENAME = "Labels.txt"
LABEL_DIRNAME = "Label"
TRAIN_DIRNAME = "Train"
TEST_DIRNAME = "Test"

_NUM_FIELDS = 5


class DAGMFormatError(DataValidationError):
    """Raised when DAGM files exist but their content is invalid.

    Covers malformed ``Labels.txt`` rows, unreadable or truncated images and
    masks whose size differs from their image. A ``ValueError``.
    """


@dataclass(frozen=True)
class DAGMLabelRow:
    """One parsed row of a DAGM ``Labels.txt`` file.

    Attributes:
        image_id: Zero-padded image id as written in the file (e.g. ``"0001"``).
        defective: Whether the row marks the image as defective.
        image_name: File name of the image, relative to the split folder.
        label_name: File name of the label mask, relative to the ``Label``
            folder, or ``None`` when the row has no label (``0``).
        line_number: 1-based line number of the row in ``Labels.txt``.
    """

    image_id: str
    defective: bool
    image_name: str
    label_name: str | None
    line_number: int


def _check_plain_filename(name: str, what: str, labels_file: Path, line_number: int) -> None:
    """Reject names that would escape the split folder or are empty."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        msg = f"{labels_file}, line {line_number}: invalid {what} {name!r} (expected a plain file name)."
        raise DAGMFormatError(msg)


def parse_dagm_labels(labels_file: str | Path) -> list[DAGMLabelRow]:
    """Parse a DAGM ``Labels.txt`` file.

    Trailing whitespace, trailing TABs, CRLF line endings, a UTF-8 BOM and
    blank lines are tolerated; anything else that deviates from the format is
    an error.

    Args:
        labels_file: Path to ``Labels.txt``.

    Returns:
        list[DAGMLabelRow]: The rows in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DAGMFormatError: If the header or a row is malformed, if a row is
            inconsistent (defective without label or vice versa) or if an
            image is listed twice.
    """
    labels_file = Path(labels_file)
    if not labels_file.is_file():
        msg = f"DAGM labels file {labels_file} does not exist."
        raise FileNotFoundError(msg)
    try:
        text = labels_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        msg = f"{labels_file}: not a text file ({error})."
        raise DAGMFormatError(msg) from error

    # Blank lines carry no content; keep real line numbers for error messages.
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        msg = f"{labels_file}: file is empty (expected a header line and one row per image)."
        raise DAGMFormatError(msg)

    header_number, header = lines[0]
    if not header.isdecimal():
        msg = f"{labels_file}, line {header_number}: expected a header line holding a single number, got {header!r}."
        raise DAGMFormatError(msg)

    rows: list[DAGMLabelRow] = []
    seen: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != _NUM_FIELDS:
            msg = (
                f"{labels_file}, line {number}: expected {_NUM_FIELDS} TAB-separated fields "
                f"'<id> <0|1> <image> 0 <label|0>', got {len(fields)}: {line!r}."
            )
            raise DAGMFormatError(msg)
        image_id, flag, image_name, reserved, label_field = fields
        if not image_id.isdecimal():
            msg = f"{labels_file}, line {number}: image id {image_id!r} is not a number: {line!r}."
            raise DAGMFormatError(msg)
        if flag not in {"0", "1"}:
            msg = f"{labels_file}, line {number}: defect flag {flag!r} must be 0 or 1: {line!r}."
            raise DAGMFormatError(msg)
        if not reserved.isdecimal():
            msg = f"{labels_file}, line {number}: fourth field {reserved!r} must be a number: {line!r}."
            raise DAGMFormatError(msg)
        _check_plain_filename(image_name, "image file name", labels_file, number)
        label_name = None if label_field == "0" else label_field
        if label_name is not None:
            _check_plain_filename(label_name, "label file name", labels_file, number)
        defective = flag == "1"
        if defective and label_name is None:
            msg = f"{labels_file}, line {number}: image {image_name!r} is marked defective but has no label file."
            raise DAGMFormatError(msg)
        if not defective and label_name is not None:
            msg = (
                f"{labels_file}, line {number}: image {image_name!r} is marked defect-free "
                f"but names label file {label_name!r}."
            )
            raise DAGMFormatError(msg)
        if image_name in seen:
            msg = f"{labels_file}, line {number}: image {image_name!r} is already listed on line {seen[image_name]}."
            raise DAGMFormatError(msg)
        seen[image_name] = number
        rows.append(DAGMLabelRow(image_id, defective, image_name, label_name, number))
    return rows
