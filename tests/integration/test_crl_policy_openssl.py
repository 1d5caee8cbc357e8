"""rdsssl.pki.crl_policy against the real `openssl verify -crl_check_all`, PostgreSQL's own check.

PostgreSQL checks client chains with X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL, which is
what `openssl verify -crl_check_all` does, so the openssl binary (a tool nobody here wrote) is
the oracle. Hypothesis draws CA bundles (one to three roots, or a root and its intermediate) and
CRL files (none to two CRLs per CA: relays with a gap or an overlap, twins with one lastUpdate;
times in minutes around `now` or a second off its edges and the margin's; entries drawn from a
pool holding the CAs' own serials; sometimes a critical CRL number), and a restart margin. Every
CA gets a leaf whose serial is never revoked. At every instant the policy must look at
(computed here independently: now, the end of the margin, and one second before and at each
CRL boundary inside it), openssl verifies all the leaves, and:

- at each instant alone (the policy asked with a zero margin there), and over the whole margin,
  the leaves that fail are exactly those under a CA the policy's findings name (a finding on a
  CA's CRL also refuses the leaves of the CAs it issued); a time finding's `at` fails in openssl;
- the one deliberate difference: a CRL with an unhandled critical extension is refused whatever
  the time, even while a better CRL of the same CA hides it from OpenSSL (the file would still
  hold a CRL PostgreSQL cannot use), so then the policy may refuse more, never less.

A second property adds a foreign or forged CRL, which the policy must always refuse; a table of
examples covers what the generator does not draw (partial CRLs, key identifiers, delta CRLs,
odd entry extensions, a CA without cRLSign). Runs are derandomized; keys are made once.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdsssl.errors import CryptoError
from rdsssl.pki import crl_policy, crl_verdict, crypto
from rdsssl.pki.crl_verdict import Code
from tests.crl_pki import NOW, Ca, key, make_ca, pem

ROOT_1 = make_ca("prop-root-1", serial=0x1001)
ROOT_2 = make_ca("prop-root-2", serial=0x1002)
ROOT_3 = make_ca("prop-root-3", serial=0x1003)
INTERMEDIATE = ROOT_1.child("prop-int-1", serial=0x2001)
OUTSIDER = make_ca("prop-outsider", serial=0x3001)
SHAPES = [
    (ROOT_1,),
    (ROOT_1, ROOT_2),
    (ROOT_1, ROOT_2, ROOT_3),
    (ROOT_1, INTERMEDIATE),
    (ROOT_1, INTERMEDIATE, ROOT_2),
]
ALL_CAS = (ROOT_1, ROOT_2, ROOT_3, INTERMEDIATE)
PARENT = {INTERMEDIATE.subject: ROOT_1.subject}
LEAVES = {ca.subject: ca.leaf(f"user{n}", serial=0x5000 + n) for n, ca in enumerate(ALL_CAS)}
# serials a CRL may list: the CAs' own and unrelated ones, never a leaf's
POOL = [0x77, 0x5EED, 0xC0FFEE, 0xBEEF, 0xF00D, *(ca.serial for ca in ALL_CAS)]
STRUCTURAL = {Code.FOREIGN_CRL, Code.BAD_SIGNATURE, Code.UNHANDLED_CRITICAL_EXTENSION}
PER_INSTANT = {Code.NOT_YET_VALID, Code.EXPIRED, Code.EXPIRES_IN_MARGIN, Code.LISTS_CA}


@dataclass(frozen=True)
class CrlSpec:
    ca: Ca
    last: int  # seconds from `now`
    next: int  # seconds from `now`, after `last`
    serials: frozenset[int]
    critical_number: bool

    def build(self, now: datetime) -> x509.CertificateRevocationList:
        return self.ca.crl(
            last=now + timedelta(seconds=self.last),
            next=now + timedelta(seconds=self.next),
            serials=self.serials,
            critical_number=self.critical_number,
        )


@dataclass(frozen=True)
class Case:
    bundle: tuple[Ca, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    now: datetime
    margin: timedelta


_SECONDS = st.sampled_from([0, -1, 1])


def _crl(draw: st.DrawFn, ca: Ca, last: int, next_: int) -> CrlSpec:
    return CrlSpec(
        ca,
        last=last,
        next=next_ if next_ > last else last + 60 * draw(st.integers(1, 300)),
        serials=draw(st.frozensets(st.sampled_from(POOL), max_size=2)),
        critical_number=draw(st.integers(0, 9)) == 4,
    )


def _lone(draw: st.DrawFn, ca: Ca, margin: int) -> CrlSpec:
    """Mostly a current CRL; sometimes one that starts later, or one that starts or ends right
    on an edge (now, the margin's middle and end, a second either side)."""
    when = draw(st.integers(0, 9))
    minutes = st.integers(1, 90) if when == 5 else st.integers(-240, 0)
    last = draw(_SECONDS) if when == 6 else 60 * draw(minutes)
    edges = st.sampled_from([0, -1, 1, margin // 2, margin - 1, margin, margin + 1])
    on_edge = draw(st.integers(0, 3)) == 2
    return _crl(draw, ca, last, draw(edges) if on_edge else last + 60 * draw(st.integers(1, 600)))


@st.composite
def crls_of(draw: st.DrawFn, ca: Ca, margin: int) -> list[CrlSpec]:
    """The CRLs of one CA, as they come in real files: usually one; or a relay (the next CRL
    starts around the end of the current one, which ends inside the margin: a gap or an
    overlap); or twins (the same lastUpdate, as when a CRL is built twice in one second); or
    two unrelated ones; rarely none."""
    kind = draw(st.sampled_from(["one", "relay", "one", "twins", "none", "two", "one"]))
    if kind == "none":
        return []
    first = _lone(draw, ca, margin)
    if kind == "one":
        return [first]
    if kind == "relay":
        end = draw(st.integers(0, margin)) + draw(_SECONDS)
        first = _crl(draw, ca, 60 * draw(st.integers(-240, 0)), end)
        gap = draw(st.sampled_from([0, 1, -1, 60, -60, 600]))
        return [first, _crl(draw, ca, end + gap, end + gap + 60 * draw(st.integers(1, 600)))]
    if kind == "twins":
        return [first, _crl(draw, ca, first.last, first.last + 60 * draw(st.integers(1, 600)))]
    return [first, _lone(draw, ca, margin)]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    bundle = tuple(draw(st.permutations(draw(st.sampled_from(SHAPES)))))
    margin = 60 * draw(st.sampled_from([60, 0, 1, 30, 120]))
    specs = draw(st.permutations([s for ca in bundle for s in draw(crls_of(ca, margin))]))
    now = NOW + timedelta(seconds=draw(st.integers(-7200, 7200)))
    return Case(bundle, tuple(s.build(now) for s in specs), now, timedelta(seconds=margin))


# --- the oracle -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "the openssl CLI is required (apt-get install openssl)"
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crl-policy")


def instants(case: Case) -> list[datetime]:
    """Every instant the policy must look at, derived here from the CRLs alone."""
    end = case.now + case.margin
    found = {case.now, end}
    for crl in case.crls:
        for bound in (crl.last_update_utc, crl.next_update_utc):
            assert bound is not None
            if case.now <= bound <= end:
                found |= {max(case.now, bound - timedelta(seconds=1)), bound}
    return sorted(found)


def verify(
    openssl: str,
    workdir: Path,
    cas: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    leaves: Sequence[x509.Certificate],
    at: Iterable[datetime],
) -> dict[datetime, set[int]]:
    """Per instant, the positions of the leaves `openssl verify -crl_check_all` refuses."""
    (workdir / "bundle.pem").write_bytes(pem(*cas))
    (workdir / "crls.pem").write_bytes(pem(*crls))
    files = [f"leaf{n}.pem" for n in range(len(leaves))]
    for name, leaf in zip(files, leaves, strict=True):
        (workdir / name).write_bytes(pem(leaf))
    crl_args = ["-CRLfile", "crls.pem"] if crls else []
    result = {}
    for t in at:
        args = ["verify", "-crl_check_all", "-CAfile", "bundle.pem", *crl_args]
        args += ["-attime", str(int(t.timestamp())), *files]
        run = subprocess.run(
            [openssl, *args], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
        )
        passed = {line.split(":")[0] for line in run.stdout.splitlines() if line.endswith(": OK")}
        assert (run.returncode == 0) == (len(passed) == len(files)), run.stdout + run.stderr
        result[t] = {n for n, name in enumerate(files) if name not in passed}
    return result


def failing_leaves(openssl: str, workdir: Path, case: Case) -> dict[datetime, set[str]]:
    """Per instant, the subjects of the CAs whose leaf openssl refuses."""
    cas = [ca.cert for ca in case.bundle]
    leaves = [LEAVES[ca.subject] for ca in case.bundle]
    failing = verify(openssl, workdir, cas, case.crls, leaves, instants(case))
    return {t: {case.bundle[n].subject for n in bad} for t, bad in failing.items()}


def under(findings: Iterable[crl_verdict.Finding], bundle: Sequence[Ca]) -> set[str]:
    """The CAs whose leaves `findings` refuse: each CA named and the bundle CAs it issued (they
    are checked against its CRL)."""
    named = {f.ca for f in findings}
    return {ca.subject for ca in bundle if named & {ca.subject, PARENT.get(ca.subject)}}


def assert_same(verdict: crl_verdict.Verdict, failing: set[str], bundle: Sequence[Ca]) -> None:
    """The policy names exactly the failing leaves' CAs; with a structural finding (only a
    critical CRL number here) it may refuse more, as the module docstring says, never less."""
    named = under((f for f in verdict.findings if f.code not in STRUCTURAL), bundle)
    hidden = under((f for f in verdict.findings if f.code in STRUCTURAL), bundle)
    assert named <= failing, verdict.findings
    if hidden:
        assert not verdict.ok
        assert failing <= named | hidden, verdict.findings
    else:
        assert failing == named, verdict.findings


# --- the properties ---------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_policy_refuses_exactly_what_openssl_refuses(
    openssl: str, workdir: Path, case: Case
) -> None:
    cas = [ca.cert for ca in case.bundle]
    per_instant = failing_leaves(openssl, workdir, case)
    for t, failing in per_instant.items():  # each instant alone: the CRL picked at t
        at_t = crl_policy.evaluate(cas, case.crls, now=t, restart_margin=timedelta(0))
        assert_same(at_t, failing, case.bundle)
    verdict = crl_policy.evaluate(cas, case.crls, now=case.now, restart_margin=case.margin)
    assert_same(verdict, set().union(*per_instant.values()), case.bundle)
    for finding in verdict.findings:  # a per-instant finding's `at` is a failing instant
        if finding.code in PER_INSTANT:
            assert finding.at is not None
            assert finding.ca in per_instant[finding.at], (finding, per_instant)


@st.composite
def spoiled_cases(draw: st.DrawFn) -> tuple[Case, Code, str]:
    case = draw(cases())
    victim = draw(st.sampled_from(case.bundle))
    if draw(st.booleans()):
        bad, code = OUTSIDER.crl(), Code.FOREIGN_CRL
    else:
        forger = key(draw(st.sampled_from(["forger", "prop-root-2", "prop-outsider"])))
        bad, code = victim.crl(signer=forger, aki=draw(st.booleans())), Code.BAD_SIGNATURE
        if forger is victim.key:  # the victim signing its own CRL is no forgery
            bad, code = OUTSIDER.crl(), Code.FOREIGN_CRL
    crls = list(case.crls)
    crls.insert(draw(st.integers(0, len(crls))), bad)
    return Case(case.bundle, tuple(crls), case.now, case.margin), code, crypto.fingerprint(bad)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(spoiled=spoiled_cases())
def test_foreign_and_forged_crls_are_always_refused(spoiled: tuple[Case, Code, str]) -> None:
    case, code, fingerprint = spoiled
    verdict = crl_policy.evaluate(
        [ca.cert for ca in case.bundle], case.crls, now=case.now, restart_margin=case.margin
    )
    assert code in {f.code for f in verdict.findings if f.crl == fingerprint}, verdict.findings
    with pytest.raises(CryptoError, match=r"^the upload: "):
        verdict.raise_if_refused("the upload")


# --- examples beyond the generator: partial CRLs, key identifiers, odd extensions -------------


def _idp(**flags: bool) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=None,
        relative_name=None,
        only_contains_user_certs=flags.get("users", False),
        only_contains_ca_certs=flags.get("cas", False),
        only_some_reasons=None,
        indirect_crl=flags.get("indirect", False),
        only_contains_attribute_certs=False,
    )


def _aki(serial: int, issuer: x509.Name) -> x509.AuthorityKeyIdentifier:
    """An authority key identifier in the issuer + serial form."""
    return x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(issuer)], serial)


_TWIN = make_ca("prop-root-1", serial=0x1009, key_label="prop-root-1-twin")
_NO_CRL_SIGN = make_ca("prop-no-crl-sign", serial=0x4001, crl_sign=False)
_REMOVE = x509.CRLReason(x509.ReasonFlags.remove_from_crl)
_ISSUER = x509.CertificateIssuer([x509.DirectoryName(ROOT_1.cert.subject)])
_DISTRIBUTION = x509.IssuingDistributionPoint(
    full_name=[x509.UniformResourceIdentifier("http://crl.invalid/root.crl")],
    relative_name=None,
    only_contains_user_certs=False,
    only_contains_ca_certs=False,
    only_some_reasons=None,
    indirect_crl=False,
    only_contains_attribute_certs=False,
)
EXAMPLES = {
    # name: (bundle, CRLs, the codes the policy gives, the bundle positions openssl refuses)
    "users-only": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(_idp(users=True), True)])],
        {Code.MISSING_CA},
        {0},
    ),
    "cas-only": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(_idp(cas=True), True)])],
        {Code.MISSING_CA},
        {0},
    ),
    "users-only-and-full": (
        (ROOT_1,),
        [
            ROOT_1.crl(extensions=[(_idp(users=True), True)]),
            ROOT_1.crl(last=NOW - timedelta(hours=2)),
        ],
        set(),
        set(),
    ),
    "distribution-point": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(_DISTRIBUTION, True)])],
        {Code.MISSING_CA},
        {0},
    ),
    "indirect": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(_idp(indirect=True), True)])],
        {Code.MISSING_CA},
        {0},
    ),
    "delta-as-full": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(x509.DeltaCRLIndicator(0), True)])],
        set(),
        set(),
    ),
    "delta-users-only": (
        (ROOT_1,),
        [ROOT_1.crl(extensions=[(x509.DeltaCRLIndicator(0), True), (_idp(users=True), True)])],
        {Code.MISSING_CA},
        {0},
    ),
    "issuer-and-serial-key-id": (
        (ROOT_1,),
        [ROOT_1.crl(aki=False, extensions=[(_aki(ROOT_1.serial, ROOT_1.cert.issuer), False)])],
        set(),
        set(),
    ),
    "key-id-of-another-serial": (
        (ROOT_1,),
        [ROOT_1.crl(aki=False, extensions=[(_aki(0x1002, ROOT_1.cert.issuer), False)])],
        {Code.MISSING_CA},
        {0},
    ),
    "key-id-of-another-issuer": (
        (ROOT_1,),
        [ROOT_1.crl(aki=False, extensions=[(_aki(ROOT_1.serial, ROOT_2.cert.subject), False)])],
        {Code.MISSING_CA},
        {0},
    ),
    "critical-but-current-loses-to-expired": (
        (ROOT_1,),
        [ROOT_1.crl(next=NOW - timedelta(minutes=1)), ROOT_1.crl(critical_number=True)],
        {Code.EXPIRED, Code.UNHANDLED_CRITICAL_EXTENSION},
        {0},
    ),
    "twins-with-key-ids": ((ROOT_1, _TWIN), [ROOT_1.crl(), _TWIN.crl()], set(), set()),
    "twins-without-key-ids": (
        (ROOT_1, _TWIN),
        [ROOT_1.crl(aki=False), _TWIN.crl(aki=False, last=NOW - timedelta(minutes=30))],
        {Code.BAD_SIGNATURE},
        {0},
    ),
    "other-key-no-key-id": (
        (ROOT_1,),
        [ROOT_1.crl(signer=_TWIN.key, aki=False)],
        {Code.BAD_SIGNATURE},
        {0},
    ),
    "critical-entry-reason": (
        (ROOT_1,),
        [
            ROOT_1.crl(
                serials=[0x77],
                entry_extensions=[(x509.CRLReason(x509.ReasonFlags.superseded), True)],
            )
        ],
        {Code.UNHANDLED_CRITICAL_EXTENSION},
        {0},
    ),
    "critical-certificate-issuer": (
        (ROOT_1,),
        [ROOT_1.crl(serials=[0x77], entry_extensions=[(_ISSUER, True)])],
        set(),
        set(),
    ),
    "remove-from-crl": (
        (ROOT_1,),
        [ROOT_1.crl(serials=[ROOT_1.serial], entry_extensions=[(_REMOVE, False)])],
        set(),
        set(),
    ),
    "no-crl-sign": ((_NO_CRL_SIGN,), [_NO_CRL_SIGN.crl()], {Code.CA_CANNOT_SIGN_CRL}, {0}),
    "root-lists-intermediate": (
        (ROOT_1, INTERMEDIATE),
        [ROOT_1.crl(serials=[INTERMEDIATE.serial]), INTERMEDIATE.crl()],
        {Code.LISTS_CA},
        {1},
    ),
}


@pytest.mark.parametrize(("bundle", "crls", "codes", "refused"), EXAMPLES.values(), ids=EXAMPLES)
def test_examples_agree_with_openssl(
    openssl: str,
    workdir: Path,
    bundle: tuple[Ca, ...],
    crls: list[x509.CertificateRevocationList],
    codes: set[Code],
    refused: set[int],
) -> None:
    cas = [ca.cert for ca in bundle]
    leaves = [ca.leaf(f"example{n}", serial=0x6000 + n) for n, ca in enumerate(bundle)]
    assert verify(openssl, workdir, cas, crls, leaves, [NOW]) == {NOW: refused}
    verdict = crl_policy.evaluate(cas, crls, now=NOW, restart_margin=timedelta(0))
    assert verdict.codes == codes, verdict.findings
