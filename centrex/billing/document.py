"""The invoice as a document: its EN 16931 data as Factur-X CII XML (made and checked by the
``factur-x`` library, XSD and its schematron), a PDF drawn with reportlab, the XML embedded in
it by ``factur-x``. Pure: bytes in, bytes out (CPU-bound: run it in a thread)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from facturx import generate_cii_xml, generate_from_binary
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen.canvas import Canvas

from centrex.billing.rules.invoice import InvoiceLine, Totals
from centrex.billing.rules.money import euros

#: EN 16931 profile of Factur-X (BT-24 urn:cen.eu:en16931:2017).
LEVEL = "en16931"


@dataclass(frozen=True)
class Party:
    name: str
    address: str
    postcode: str
    city: str
    country: str  # ISO 3166 alpha-2
    vat_id: str | None = None


@dataclass(frozen=True)
class InvoiceDoc:
    reference: str
    issued_on: date
    due_on: date
    period_start: date
    period_end: date
    seller: Party
    buyer: Party
    lines: list[InvoiceLine]
    totals: Totals
    payment_terms: str
    type_code: str = "380"  # 380 commercial invoice, 381 credit note
    preceding: str | None = None  # a credit note: the invoice it credits

    interim: bool = False  # art. 11.2: usage asked for early

    @property
    def title(self) -> str:
        if self.type_code == "381":
            return "Credit note"
        return "Interim invoice" if self.interim else "Invoice"


def _party(party: Party) -> dict:
    out = {"name": party.name, "addr_l1": party.address, "postcode": party.postcode,
           "city": party.city, "country_code": party.country}  # fmt: skip
    if party.vat_id:
        out["vat_identifier"] = party.vat_id
    return out


def _category(rate: Decimal) -> str:
    return "S" if rate > 0 else "Z"  # standard rate, or zero-rated


def facturx_xml(doc: InvoiceDoc) -> bytes:
    """The CII XML of the invoice, EN 16931 profile; the library checks it against the Factur-X
    XSD and raises if it fails. Its schematron check needs a Saxon server (an HTTP service):
    not run here (docs/billing.md)."""
    data = {
        "BT-1": doc.reference,
        "BT-2": doc.issued_on,
        "BT-3": doc.type_code,
        "BT-5": "EUR",
        "BT-9": doc.due_on,
        "BT-20": doc.payment_terms,
        "BT-24": "urn:cen.eu:en16931:2017",
        "BT-72": doc.period_end,  # services: delivered over the period
        "BT-73": doc.period_start,
        "BT-74": doc.period_end,
        **({"BG-3": [{"BT-25": doc.preceding}]} if doc.preceding else {}),
        "BG-4": _party(doc.seller),
        "BG-7": _party(doc.buyer),
        "BG-25": [
            {
                "BT-126": str(n),
                "BT-129": "1",
                "BT-130": "C62",  # one (unit)
                "BT-131": euros(line.amount_cents),
                "BT-146": euros(line.amount_cents),
                "BT-151": _category(line.vat_rate),
                "BT-152": f"{line.vat_rate:.2f}",
                "BT-153": line.label,
            }
            for n, line in enumerate(doc.lines, 1)
        ],
        "BG-23": [
            {
                "BT-116": euros(base),
                "BT-117": euros(vat),
                "BT-118": _category(rate),
                "BT-119": f"{rate:.2f}",
            }
            for rate, (base, vat) in doc.totals.vat_by_rate.items()
        ],
        "BT-106": euros(doc.totals.ht_cents),
        "BT-109": euros(doc.totals.ht_cents),
        "BT-110": euros(doc.totals.vat_cents),
        "BT-112": euros(doc.totals.ttc_cents),
        "BT-115": euros(doc.totals.ttc_cents),
    }
    return generate_cii_xml(data, level=LEVEL, check_xsd=True, check_schematron=False)


def _fit(pdf: Canvas, value: str, width: float, size: int) -> str:
    """``value`` cut (with an ellipsis) to ``width`` points in Helvetica ``size``."""
    if pdf.stringWidth(value, "Helvetica", size) <= width:
        return value
    while value and pdf.stringWidth(value + "…", "Helvetica", size) > width:
        value = value[:-1]
    return value + "…"


def _pdf(doc: InvoiceDoc) -> bytes:
    """The human-readable invoice (A4)."""
    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=True)  # invariant: same input, same bytes
    pdf.setTitle(f"{doc.title} {doc.reference}")
    height = A4[1]
    y = height - 20 * mm

    def text(x: float, value: str, *, size: int = 10, bold: bool = False) -> None:
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(x, y, value)

    def right(x: float, value: str, *, bold: bool = False) -> None:
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", 10)
        pdf.drawRightString(x, y, value)

    text(20 * mm, doc.seller.name, size=14, bold=True)
    text(120 * mm, f"{doc.title} {doc.reference}", size=14, bold=True)
    for seller_line, info in zip(
        (doc.seller.address, f"{doc.seller.postcode} {doc.seller.city}",
         f"VAT {doc.seller.vat_id or '-'}"),
        (f"Issued {doc.issued_on:%d/%m/%Y}", f"Due {doc.due_on:%d/%m/%Y}",
         f"Usage {doc.period_start:%d/%m/%Y} - {doc.period_end:%d/%m/%Y}"),
        strict=True,
    ):  # fmt: skip
        y -= 6 * mm
        text(20 * mm, seller_line)
        text(120 * mm, info)
    y -= 12 * mm
    text(120 * mm, doc.buyer.name, bold=True)
    y -= 6 * mm
    if doc.buyer.address.strip("-"):
        text(120 * mm, f"{doc.buyer.address}, {doc.buyer.postcode} {doc.buyer.city}")
    else:
        text(120 * mm, doc.buyer.country)
    y -= 14 * mm
    text(20 * mm, "Description", bold=True)
    right(140 * mm, "VAT %", bold=True)
    right(190 * mm, "Amount HT (EUR)", bold=True)
    for line in doc.lines:
        y -= 6 * mm
        if y < 40 * mm:
            pdf.showPage()
            y = height - 20 * mm
        text(20 * mm, _fit(pdf, line.label, 100 * mm, 9), size=9)
        right(140 * mm, f"{line.vat_rate:.2f}")
        right(190 * mm, euros(line.amount_cents))
    y -= 10 * mm
    right(160 * mm, "Total HT", bold=True)
    right(190 * mm, euros(doc.totals.ht_cents), bold=True)
    for rate, (base, vat) in doc.totals.vat_by_rate.items():
        y -= 6 * mm
        right(160 * mm, f"VAT {rate:.2f} % on {euros(base)}")
        right(190 * mm, euros(vat))
    y -= 6 * mm
    right(160 * mm, "Total TTC", bold=True)
    right(190 * mm, euros(doc.totals.ttc_cents), bold=True)
    y -= 12 * mm
    if doc.preceding:
        text(20 * mm, f"Credits invoice {doc.preceding}.", size=9)
        y -= 6 * mm
    for part in simpleSplit(doc.payment_terms, "Helvetica", 8, 170 * mm):
        text(20 * mm, part, size=8)
        y -= 4 * mm
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def render(doc: InvoiceDoc) -> tuple[bytes, bytes]:
    """(the Factur-X PDF, its XML)."""
    xml = facturx_xml(doc)
    pdf = generate_from_binary(
        _pdf(doc), xml, flavor="factur-x", level=LEVEL, check_xsd=True,
        pdf_metadata={"author": doc.seller.name, "keywords": "Factur-X, Invoice",
                      "title": f"{doc.seller.name}: {doc.title.lower()} {doc.reference}",
                      "subject": f"{doc.title} {doc.reference}"},
        lang="en-GB",
    )  # fmt: skip
    return pdf, xml
