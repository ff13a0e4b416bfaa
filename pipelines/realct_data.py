"""Which shared real CT trains the real-CT tokenizer, which is held out, and under which licences.

Shared by ``pipelines/train_realct_tokenizer.py`` (data preparation, training) and
``pipelines/realct_report.py`` (evaluation and the card), so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "volumes"

# (name, path below SHARED, which slices: None = all, or a list) — what trains; the rest of SHARED is held out.
TRAIN_VOLUMES = [("lidc0314", "real_chest_lidc0314_philips_128sl_1mm", None)]
TRAIN_SLICES = [
    ("siemens", "real_chest_siemens_sensation10_30sl_8mm", None),
    ("copdgene_ge", "real_chest_copdgene_cip/simple_dicom", None),
    ("lungmask", "dicom_chest_lungmask", [0]),  # stored twice (identical slices at z = 0, 1)
    ("ct_small", "pydicom_CT_small.dcm", None),
    ("ge_ctc", "real_abdomen_ge_ctc_3sl", None),
]
HELD_OUT = [
    ("philips_bigbore_2mm", "real_chest_philips_bigbore_16sl_2mm_evalonly", "thin"),
    ("copdgene_ct64", "real_chest_copdgene_cip/ct-64Dicom", "thick"),
    ("totalseg_abdomen_3mm", "totalseg_abdomen_example_ct_sm.nii.gz", "thick"),
]
LICENCES = {
    "lidc0314": "LIDC-IDRI (TCIA), CC BY 3.0",
    "siemens": "TCIA Lung-PET-CT-Dx, CC BY 4.0",
    "copdgene_ge": "COPDGene via the Chest Imaging Platform, CIP BSD-style licence",
    "lungmask": "JoHof/lungmask test data, Apache-2.0",
    "ct_small": "pydicom test file, pydicom licence (MIT-style)",
    "ge_ctc": "GE CT colonography test slices, BSD-3",
    "phantoms": "ctvl procedural phantoms, Apache-2.0",
}
