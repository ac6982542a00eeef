"""A bank, for the tests: reads the pain.008 collection file we sent it (standard input) and
answers as a bank does, on standard output, in the real ISO 20022 formats:

    python tests/bank_sim.py pain002 --reject FA000001=AM04 [...] < pain008.xml
    python tests/bank_sim.py camt054 --settle FA000002 --return FA000003=MD06 --on 2027-01-08

- ``pain002``: a pain.002.001.11 status report of the whole file: the transactions named in
  ``--reject`` with status RJCT and their reason, the others ACCP.
- ``camt054``: a camt.054.001.08 notification of the creditor account: one booked credit entry
  (the batch) with a transaction per ``--settle``d end-to-end id; one booked debit entry per
  ``--return``ed one (with its return reason).

Amounts, mandate references and dates come from the pain.008 itself; ``--amount E2E=12.34``
overrides one (a bank that answers with another amount); ``--unknown E2E`` adds a transaction
the file never had. A separate process, like the bank: the tests only see its files."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime

from lxml import etree

PAIN_008 = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"
PAIN_002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.11"
CAMT_054 = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"


def _pairs(values: list[str]) -> dict[str, str]:
    return dict(v.split("=", 1) if "=" in v else (v, "") for v in values)


def read_pain008(data: bytes) -> dict:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"d": PAIN_008}
    one = lambda node, path: node.findtext(path, namespaces=ns)  # noqa: E731
    txs = {}
    for info in root.iterfind("d:CstmrDrctDbtInitn/d:PmtInf", ns):
        for tx in info.iterfind("d:DrctDbtTxInf", ns):
            e2e = one(tx, "d:PmtId/d:EndToEndId")
            txs[e2e] = {
                "pmtinf": one(info, "d:PmtInfId"), "date": one(info, "d:ReqdColltnDt"),
                "amount": one(tx, "d:InstdAmt"),
                "mandate": one(tx, "d:DrctDbtTx/d:MndtRltdInf/d:MndtId"),
                "iban": one(tx, "d:DbtrAcct/d:Id/d:IBAN"),
            }  # fmt: skip
    return {
        "msgid": one(root, "d:CstmrDrctDbtInitn/d:GrpHdr/d:MsgId"),
        "creditor_iban": one(root, "d:CstmrDrctDbtInitn/d:PmtInf/d:CdtrAcct/d:Id/d:IBAN"),
        "txs": txs,
    }


def _el(parent, tag: str, text: str | None = None, **attrs):
    element = etree.SubElement(parent, tag, **attrs)
    if text is not None:
        element.text = text
    return element


def pain002(sent: dict, rejects: dict[str, str], amounts: dict[str, str], msgid: str) -> bytes:
    root = etree.Element("Document", nsmap={None: PAIN_002})
    report = _el(root, "CstmrPmtStsRpt")
    header = _el(report, "GrpHdr")
    _el(header, "MsgId", msgid)
    _el(header, "CreDtTm", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    group = _el(report, "OrgnlGrpInfAndSts")
    _el(group, "OrgnlMsgId", sent["msgid"])
    _el(group, "OrgnlMsgNmId", "pain.008.001.02")
    _el(group, "GrpSts", "PART" if rejects else "ACCP")
    by_info: dict[str, list] = {}
    for e2e, tx in sent["txs"].items():
        by_info.setdefault(tx["pmtinf"], []).append((e2e, tx))
    for e2e in rejects:
        if e2e not in sent["txs"]:  # a transaction the file never had
            by_info.setdefault("UNKNOWN", []).append(
                (e2e, {"amount": amounts.get(e2e, "1.00"), "mandate": None, "date": None})
            )
    for info_id, txs in by_info.items():
        info = _el(report, "OrgnlPmtInfAndSts")
        _el(info, "OrgnlPmtInfId", info_id)
        for e2e, tx in txs:
            status = _el(info, "TxInfAndSts")
            _el(status, "OrgnlEndToEndId", e2e)
            _el(status, "TxSts", "RJCT" if e2e in rejects else "ACCP")
            if e2e in rejects:
                _el(_el(_el(status, "StsRsnInf"), "Rsn"), "Cd", rejects[e2e] or "AM04")
            ref = _el(status, "OrgnlTxRef")
            _el(_el(ref, "Amt"), "InstdAmt", amounts.get(e2e, tx["amount"]), Ccy="EUR")
            if tx["date"]:
                _el(ref, "ReqdColltnDt", tx["date"])
            if tx["mandate"]:
                _el(_el(_el(ref, "MndtRltdInf"), "DrctDbtMndt"), "MndtId", tx["mandate"])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _entry(ntfctn, sign: str, amount: str, on: str, family: tuple[str, str]):
    entry = _el(ntfctn, "Ntry")
    _el(entry, "Amt", amount, Ccy="EUR")
    _el(entry, "CdtDbtInd", sign)
    _el(_el(entry, "Sts"), "Cd", "BOOK")
    _el(_el(entry, "BookgDt"), "Dt", on)
    _el(_el(entry, "ValDt"), "Dt", on)
    domain = _el(_el(entry, "BkTxCd"), "Domn")
    _el(domain, "Cd", "PMNT")
    fmly = _el(domain, "Fmly")
    _el(fmly, "Cd", family[0])
    _el(fmly, "SubFmlyCd", family[1])
    return _el(entry, "NtryDtls")


def _tx(details, e2e: str, tx: dict, amount: str, sign: str, reason: str | None) -> None:
    out = _el(details, "TxDtls")
    refs = _el(out, "Refs")
    _el(refs, "EndToEndId", e2e)
    if tx.get("mandate"):
        _el(refs, "MndtId", tx["mandate"])
    _el(out, "Amt", amount, Ccy="EUR")
    _el(out, "CdtDbtInd", sign)
    if reason is not None:
        _el(_el(_el(out, "RtrInf"), "Rsn"), "Cd", reason or "MD06")


def camt054(sent: dict, settle: list[str], returns: dict[str, str], amounts: dict[str, str],
            on: str, msgid: str) -> bytes:  # fmt: skip
    root = etree.Element("Document", nsmap={None: CAMT_054})
    notification = _el(root, "BkToCstmrDbtCdtNtfctn")
    header = _el(notification, "GrpHdr")
    _el(header, "MsgId", msgid)
    _el(header, "CreDtTm", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    ntfctn = _el(notification, "Ntfctn")
    _el(ntfctn, "Id", f"N-{msgid}")
    _el(_el(_el(ntfctn, "Acct"), "Id"), "IBAN", sent["creditor_iban"])
    unknown = {"amount": "1.00", "mandate": None}
    if settle:
        amount = {e: amounts.get(e, sent["txs"].get(e, unknown)["amount"]) for e in settle}
        total = f"{sum(float(a) for a in amount.values()):.2f}"
        details = _entry(ntfctn, "CRDT", total, on, ("RDDT", "ESDD"))
        for e2e in settle:
            _tx(details, e2e, sent["txs"].get(e2e, unknown), amount[e2e], "CRDT", None)
    for e2e, reason in returns.items():
        tx = sent["txs"].get(e2e, unknown)
        amount = amounts.get(e2e, tx["amount"])
        details = _entry(ntfctn, "DBIT", amount, on, ("RDDT", "UPDD"))
        _tx(details, e2e, tx, amount, "DBIT", reason)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["pain002", "camt054"])
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--settle", action="append", default=[])
    parser.add_argument("--return", dest="returns", action="append", default=[])
    parser.add_argument("--amount", action="append", default=[])
    parser.add_argument("--on", default=datetime.now(UTC).date().isoformat())
    parser.add_argument("--msgid", default=None)
    args = parser.parse_args()
    sent = read_pain008(sys.stdin.buffer.read())
    msgid = args.msgid or f"BANK-{uuid.uuid4().hex[:20]}"
    amounts = _pairs(args.amount)
    if args.kind == "pain002":
        out = pain002(sent, _pairs(args.reject), amounts, msgid)
    else:
        out = camt054(sent, args.settle, _pairs(args.returns), amounts, args.on, msgid)
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
