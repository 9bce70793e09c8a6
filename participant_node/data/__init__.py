"""A partner's data plane: readers and validation for the data contract of DESIGN.md."""

from participant_node.data.contract import CONTRACT, ColumnSpec, ColumnType, FileKind, FileSpec
from participant_node.data.errors import DataContractError
from participant_node.data.federation import (
    Federation,
    Partner,
    PartnerKind,
    is_partner_folder,
    load_federation,
)
from participant_node.data.partner_data import (
    PartnerData,
    fingerprint_partner,
    load_partner,
    validate_partner,
)
from participant_node.data.validation_report import FileReport, PartnerReport, Problem

__all__ = [
    "CONTRACT",
    "ColumnSpec",
    "ColumnType",
    "DataContractError",
    "Federation",
    "FileKind",
    "FileReport",
    "FileSpec",
    "Partner",
    "PartnerData",
    "PartnerKind",
    "PartnerReport",
    "Problem",
    "fingerprint_partner",
    "is_partner_folder",
    "load_federation",
    "load_partner",
    "validate_partner",
]
