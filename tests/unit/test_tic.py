"""Linky TIC frames: checksums of both modes, parsing, normalization, builders."""

from __future__ import annotations

import pytest

from app.domain.tic import (
    TicError,
    build_frame_historique,
    build_frame_standard,
    checksum,
    measures,
    parse_frame,
)

# Groups as printed in Enedis-NOI-CPT_54E and on real meters, with their checksum character.
KNOWN_GROUPS = [
    ("historique", "ADCO 031762120152", "5"),
    ("historique", "OPTARIF BASE", "0"),
    ("historique", "OPTARIF HC..", "<"),
    ("historique", "ISOUSC 30", "9"),
    ("historique", "PTEC TH..", "$"),
    ("historique", "IINST 001", "X"),
    ("historique", "IMAX 008", "G"),
    ("historique", "HHPHC A", ","),
    ("historique", "MOTDETAT 000000", "B"),
    ("standard", "ADSC\t041876097289\t", "J"),
    ("standard", "VTIC\t02\t", "J"),
    ("standard", "NGTF\t      TEMPO     \t", "F"),
    ("standard", "DATE\tE200619172652\t\t", "G"),
    ("standard", "STGE\t003A0001\t", ":"),
    ("standard", "PRM\t21463254145876\t", ";"),
]


@pytest.mark.parametrize(("mode", "covered", "expected"), KNOWN_GROUPS)
def test_checksum_of_known_groups(mode: str, covered: str, expected: str) -> None:
    assert checksum(covered.encode("ascii")) == expected


# A historique frame written out by hand (single phase, "heures creuses" option).
HISTORIQUE_HC = (
    "\x02"
    "\nADCO 031762120152 5\r"
    "\nOPTARIF HC.. <\r"
    "\nISOUSC 30 9\r"
    "\nHCHC 012345678 *\r"
    "\nHCHP 023456789 ?\r"
    "\nPTEC HP..  \r"
    "\nIINST 001 X\r"
    "\nIMAX 008 G\r"
    "\nPAPP 00230 &\r"
    "\nHHPHC A ,\r"
    "\nMOTDETAT 000000 B\r"
    "\x03"
)

# A standard-mode frame written out by hand, with horodated groups (DATE, SMAXSN).
STANDARD_TEMPO = (
    "\x02"
    "\nADSC\t041876097289\tJ\r"
    "\nVTIC\t02\tJ\r"
    "\nDATE\tE200619172652\t\tG\r"
    "\nNGTF\t      TEMPO     \tF\r"
    "\nLTARF\t    HP  BLEU    \t+\r"
    "\nEAST\t035802467\t2\r"
    "\nEASF01\t012345678\tF\r"
    "\nEASF02\t023456789\tO\r"
    "\nIRMS1\t003\t1\r"
    "\nURMS1\t232\tA\r"
    "\nSINSTS\t00750\tR\r"
    "\nSMAXSN\tE200619063000\t03218\t3\r"
    "\x03"
)


def test_hand_written_frames_have_the_checksums_the_builders_produce() -> None:
    rebuilt_h = build_frame_historique(parse_frame(HISTORIQUE_HC).groups)
    assert rebuilt_h == HISTORIQUE_HC
    parsed = parse_frame(STANDARD_TEMPO)
    rebuilt_s = build_frame_standard(
        {
            k: (parsed.horodates[k], v) if k in parsed.horodates else v
            for k, v in parsed.groups.items()
        }
    )
    assert rebuilt_s == STANDARD_TEMPO


def test_historique_checksum_can_be_a_space() -> None:
    # "PTEC HP.." sums to 0x2E0: (0x2E0 & 0x3F) + 0x20 == 0x20, the checksum is SP.
    assert checksum(b"PTEC HP..") == " "
    assert parse_frame(HISTORIQUE_HC).groups["PTEC"] == "HP.."


def test_parse_historique() -> None:
    frame = parse_frame(HISTORIQUE_HC)
    assert frame.mode == "historique"
    assert frame.groups["ADCO"] == "031762120152"
    assert frame.groups["HCHC"] == "012345678"
    assert frame.horodates == {}
    assert len(frame.groups) == 11


def test_parse_standard_with_horodates() -> None:
    frame = parse_frame(STANDARD_TEMPO)
    assert frame.mode == "standard"
    assert frame.groups["NGTF"] == "      TEMPO     "
    assert frame.groups["DATE"] == ""
    assert frame.horodates == {"DATE": "E200619172652", "SMAXSN": "E200619063000"}
    assert frame.groups["SMAXSN"] == "03218"


def test_measures_historique() -> None:
    m = measures(parse_frame(HISTORIQUE_HC))
    assert m.meter_id == "031762120152"
    assert m.power_w == 230.0
    assert m.apparent_va == 230.0
    assert m.indexes_wh == {"HCHC": 12_345_678.0, "HCHP": 23_456_789.0}
    assert m.energy_wh == 35_802_467.0
    assert m.tariff == "HP"
    assert m.current_a == 1.0
    assert m.voltage_v is None


def test_measures_standard() -> None:
    m = measures(parse_frame(STANDARD_TEMPO))
    assert m.meter_id == "041876097289"
    assert m.power_w == 750.0
    assert m.apparent_va == 750.0
    assert m.energy_wh == 35_802_467.0  # EAST, not the sum of the listed EASF
    assert m.indexes_wh == {"EASF01": 12_345_678.0, "EASF02": 23_456_789.0}
    assert m.tariff == "HP  BLEU"
    assert m.current_a == 3.0
    assert m.voltage_v == 232.0


@pytest.mark.parametrize(
    ("groups", "power", "energy", "indexes"),
    [
        ({"ADCO": "1", "OPTARIF": "BASE", "BASE": "002809718", "PAPP": "00180"},
         180.0, 2_809_718.0, {"BASE": 2_809_718.0}),
        ({"ADCO": "1", "OPTARIF": "EJP.", "EJPHN": "000001000", "EJPHPM": "000000500",
          "PTEC": "PM..", "PAPP": "01200"},
         1200.0, 1500.0, {"EJPHN": 1000.0, "EJPHPM": 500.0}),
        ({"ADCO": "1", "OPTARIF": "BBR(", "BBRHCJB": "000000010", "BBRHPJB": "000000020",
          "BBRHCJW": "000000030", "BBRHPJW": "000000040", "BBRHCJR": "000000050",
          "BBRHPJR": "000000060", "PTEC": "HPJR", "PAPP": "09999"},
         9999.0, 210.0, {"BBRHCJB": 10.0, "BBRHPJB": 20.0, "BBRHCJW": 30.0, "BBRHPJW": 40.0,
                         "BBRHCJR": 50.0, "BBRHPJR": 60.0}),
        ({"ADCO": "1", "PAPP": "00000"}, 0.0, None, None),
    ],
)  # fmt: skip
def test_measures_historique_tariff_options(
    groups: dict[str, str], power: float, energy: float | None, indexes: dict[str, float] | None
) -> None:
    m = measures(parse_frame(build_frame_historique(groups)))
    assert (m.power_w, m.energy_wh, m.indexes_wh) == (power, energy, indexes)


def test_measures_standard_producer_nets_injection_and_sums_without_east() -> None:
    frame = build_frame_standard(
        {"ADSC": "9", "EASF01": "000000100", "EASF02": "000000023", "SINSTS": "00000",
         "SINSTI": "01500", "LTARF": "  BASE  "}
    )  # fmt: skip
    m = measures(parse_frame(frame))
    assert m.power_w == -1500.0
    assert m.apparent_va == 0.0
    assert m.energy_wh == 123.0
    assert m.tariff == "BASE"


def _corrupt_checksum(frame: str, label: str) -> str:
    start = frame.index("\n" + label)
    end = frame.index("\r", start)
    bad = "A" if frame[end - 1] != "A" else "B"
    return frame[: end - 1] + bad + frame[end:]


@pytest.mark.parametrize(
    ("frame", "labels"),
    [
        (_corrupt_checksum(HISTORIQUE_HC, "PAPP"), "PAPP"),
        (_corrupt_checksum(_corrupt_checksum(HISTORIQUE_HC, "ADCO"), "HCHP"), "ADCO, HCHP"),
        (_corrupt_checksum(STANDARD_TEMPO, "EAST"), "EAST"),
        (_corrupt_checksum(STANDARD_TEMPO, "SMAXSN"), "SMAXSN"),
        # data altered, checksum kept: the classic line-noise error
        (HISTORIQUE_HC.replace("PAPP 00230", "PAPP 00231"), "PAPP"),
        (STANDARD_TEMPO.replace("SINSTS\t00750", "SINSTS\t00751"), "SINSTS"),
        # standard checksum must include the last HT: computed the historique way, it is wrong
        ("\x02\nVTIC\t02\t" + checksum(b"VTIC\t02") + "\r\x03", "VTIC"),
    ],
)
def test_bad_checksums_reject_the_frame_naming_every_bad_group(frame: str, labels: str) -> None:
    with pytest.raises(TicError) as err:
        parse_frame(frame)
    assert err.value.reason == "bad_checksum"
    assert err.value.detail.endswith(f"bad checksum on {labels}")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("", "not_decodable"),
        ("\x02\x03", "not_decodable"),
        ("\x02\nADCO 031762120152 5\ré\r\x03", "not_decodable"),
        ("\x02\nADCO 031762120152 5\r\nOPTA\x04", "schema_violation"),
        ("\x02\nADCO 031762120152 5", "schema_violation"),
        ("\x02ADCO 031762120152 5\r\x03", "schema_violation"),
        ("\x02\nADCO031762120152X5\r\x03", "schema_violation"),
        ("\x02\nADCO 031762120152 5\r\nADCO 031762120152 5\r\x03", "schema_violation"),
        (build_frame_historique({"ADCO": "1", "OPTARIF": "BASE"}), "schema_violation"),
        (build_frame_historique({"ADCO": "1", "PAPP": "0x1F"}), "schema_violation"),
        (build_frame_standard({"ADSC": "1", "EAST": "000000001"}), "schema_violation"),
        ("\x02\nSINSTS\t\uff11\uff12\tA\r\x03", "not_decodable"),  # fullwidth digits
    ],
)
def test_malformed_frames(frame: str, reason: str) -> None:
    with pytest.raises(TicError) as err:
        measures(parse_frame(frame))
    assert err.value.reason == reason


def test_stx_etx_are_optional_and_bytes_are_accepted() -> None:
    bare = HISTORIQUE_HC.strip("\x02\x03")
    assert parse_frame(bare) == parse_frame(HISTORIQUE_HC)
    assert parse_frame(STANDARD_TEMPO.encode("ascii")) == parse_frame(STANDARD_TEMPO)


def test_builders_refuse_separators_inside_values() -> None:
    with pytest.raises(ValueError):
        build_frame_historique({"ADCO": "12 34"})
    with pytest.raises(ValueError):
        build_frame_standard({"ADSC": "12\t34"})
    with pytest.raises(ValueError):
        build_frame_historique([("DATE", ("E200619172652", ""))])  # type: ignore[list-item]
