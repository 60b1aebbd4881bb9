"""Signs a PDF with pyHanko for kyso-pdf's verification tests.

sign.py IN OUT KEY CERT FIELD SUBFILTER [--chain PEM]... [--tsa URL] [--pss] [--md DIGEST]
SUBFILTER is "pades" (ETSI.CAdES.detached) or "pkcs7" (adbe.pkcs7.detached). The signature
is appended as an incremental update, so signing a signed file adds a second signature.
"""
import argparse
import warnings

warnings.simplefilter("ignore")

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.sign import fields, signers, timestamps  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("input")
parser.add_argument("output")
parser.add_argument("key")
parser.add_argument("cert")
parser.add_argument("field")
parser.add_argument("subfilter", choices=["pades", "pkcs7"])
parser.add_argument("--chain", action="append", default=[])
parser.add_argument("--tsa")
parser.add_argument("--pss", action="store_true")
parser.add_argument("--md", default="sha256")
args = parser.parse_args()

signer = signers.SimpleSigner.load(
    args.key, args.cert, ca_chain_files=tuple(args.chain), prefer_pss=args.pss
)
subfilter = (
    fields.SigSeedSubFilter.PADES
    if args.subfilter == "pades"
    else fields.SigSeedSubFilter.ADOBE_PKCS7_DETACHED
)
meta = signers.PdfSignatureMetadata(
    field_name=args.field, subfilter=subfilter, md_algorithm=args.md
)
timestamper = timestamps.HTTPTimeStamper(args.tsa) if args.tsa else None
with open(args.input, "rb") as inp:
    writer = IncrementalPdfFileWriter(inp)
    with open(args.output, "wb") as out:
        signers.sign_pdf(writer, meta, signer=signer, timestamper=timestamper, output=out)
