"""flist benchmarks against casync on a real Debian rootfs, in one run.

    python3 bench/flist_build.py [--quick] [--lzma] [--no-plus] [--image-mib N]

1. Build throughput (MB/s of file bytes) of the real `zosnode flist create`
   command (a separate process, as a user runs it) against `casync make`,
   interleaved, best of two each.
2. Cost of each codec and level, and of convergent encryption, per block.
3. Extraction into a directory against `casync extract`.
4. Dedupe between two related trees (minbase, then minbase + curl, less,
   procps): bytes a node holding the first must fetch for the second, against
   casync's chunk store on the same pair (skipped with --no-plus).
5. A large file (1 GiB) with 4 KiB inserted at nine points: the bytes a node
   holding the old version fetches (blocks of the new flist not in the old),
   against casync (bytes of the new chunks in the .castr store), and the
   content-defined chunk size's trade-off (bytes fetched against requests);
   then the same chunkers at 300 insertion points of a 256 MiB file (chunking
   only the few MiB around each point, from a cut of the old version on), as
   nine points are too few to tell 0.9x from 1.1x.
6. Requests needed to read every file once (distinct blocks / chunks).
7. The fixed block-size sweep behind the small-file packing (not --quick).

Writes bench/flist.md. Needs root (debootstrap; cached under work/cache/),
casync and GNU time (/usr/bin/time, for the peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.rootfs import rootfs_tarball, unpack_rootfs  # noqa: E402
from zosnode.flist.blocks import Compression, decode_block  # noqa: E402
from zosnode.flist.builder import build_from  # noqa: E402
from zosnode.flist.format import Flist, decode  # noqa: E402
from zosnode.flist.pack import BuildOptions  # noqa: E402
from zosnode.flist.stats import fetch_bytes, flist_stats  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.writer import encode, encode_block  # noqa: E402

EXTRA = ("curl", "less", "procps")
MB = 1_000_000
MiB = 1 << 20


def warm(tree: Path) -> None:
    """Read every file once so both tools start from the page cache."""
    for dirpath, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    while fh.read(1 << 20):
                        pass


def cli_create(src: Path, store: Path, *flags: str) -> tuple[dict[str, Any], float]:
    """`zosnode flist create --json` as a separate process; its summary (plus its
    peak RSS, "rss_mib", as GNU time reports it: the rusage of a child forked
    from this big benchmark process would count this process's pages) and wall time."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name,
             sys.executable, "-m", "zosnode", "flist", "create", str(src), "--store",
             str(store), "--json", *flags], cwd=REPO, check=True, capture_output=True,
            text=True,
        )
        took = time.perf_counter() - t
        doc: dict[str, Any] = json.loads(proc.stdout)
        doc["rss_mib"] = int(rss.read().split()[-1]) / 1024
    return doc, took


def load(store: Path, fid: str) -> Flist:
    return decode(LocalStore(store).get_flist(fid))


def ours(tree: Path, store: Path, options: BuildOptions) -> tuple[Flist, Any, float]:
    """In process (for the sweeps, where only the layout matters)."""
    t = time.perf_counter()
    flist, stats = build_from(str(tree), LocalStore(store), options)
    LocalStore(store).put_flist(encode(flist))
    return flist, stats, time.perf_counter() - t


def casync_make(src: Path, store: Path, index: Path, compression: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        ["casync", "make", f"--store={store}", f"--compression={compression}",
         str(index), str(src)], check=True, capture_output=True,
    )
    return time.perf_counter() - t


def caidx_chunks(index: Path) -> list[str]:
    """Chunk ids in a casync index (.caidx or .caibx): 48-byte header, 16-byte
    table header, 40-byte items (u64 end offset, 32-byte id), 40-byte tail."""
    data = index.read_bytes()
    body = data[64:-40]
    if len(body) % 40:
        raise RuntimeError(f"{index}: unexpected casync index layout")
    return [body[i + 8 : i + 40].hex() for i in range(0, len(body), 40)]


def chunk_sizes(store: Path) -> dict[str, int]:
    return {p.name.removesuffix(".cacnk"): p.stat().st_size for p in store.rglob("*.cacnk")}


def dir_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def write_image(path: Path, size: int, insert_at: int | None, seed: int = 1) -> None:
    """`size` pseudo-random bytes (seeded), with 4 KiB of others at `insert_at`."""
    r = random.Random(seed)
    done = 0
    with open(path, "wb") as f:
        while done < size:
            n = min(64 * MiB, size - done)
            piece = r.randbytes(n)
            if insert_at is not None and done <= insert_at < done + n:
                cut = insert_at - done
                f.write(piece[:cut])
                f.write(random.Random(seed + 1).randbytes(4096))
                f.write(piece[cut:])
            else:
                f.write(piece)
            done += n


def build_table(base: Path, work: Path, rows: list[str], lzma: bool) -> tuple[str, Flist]:
    builds = [
        ("zstd (default)", ()),
        ("zlib", ("--compression", "zlib")),
        ("none", ("--compression", "none")),
        ("zstd + encrypt", ("--encrypt",)),
    ]
    if lzma:
        builds.append(("lzma", ("--compression", "lzma")))
    results: dict[str, tuple[dict[str, Any], float, int]] = {}
    casync: dict[str, tuple[float, int]] = {}
    # Interleaved, into fresh stores, best of two: ours, then casync, twice.
    for attempt in range(2):
        for i, (name, flags) in enumerate(builds):
            store = work / f"s-{i}-{attempt}"
            doc, took = cli_create(base, store, *flags)
            if name not in results or took < results[name][1]:
                results[name] = (doc, took, dir_bytes(store / "blocks"))
            if i == 0:
                for comp in ("zstd", "gzip"):
                    cstore = work / f"ca-{comp}-{attempt}"
                    t = casync_make(base, cstore, work / f"base-{comp}.caidx", comp)
                    if comp not in casync or t < casync[comp][0]:
                        casync[comp] = (t, dir_bytes(cstore))
    base_doc, base_time, _ = results["zstd (default)"]
    fb = base_doc["file_bytes"]
    base_flist = load(work / "s-0-0", base_doc["id"])
    st = flist_stats(base_flist)
    rows.append("## Build throughput on Debian bookworm minbase\n")
    rows.append(f"Tree: {st.entries} entries, {st.by_kind.get('reg', 0)} regular files, "
                f"{fb / MB:.1f} MB of file bytes (page cache warm). Ours is the real command, "
                "`zosnode flist create SRC --store DIR --json`, a separate process each time "
                "(interpreter start, tree walk, every block compressed, hashed and written with "
                "fsync, the flist written); best of two, interleaved with casync's.\n")
    rows.append("| builder | time s | MB/s | store MB | peak RSS MiB |")
    rows.append("|---|---:|---:|---:|---:|")
    for name, (doc, took, sbytes) in results.items():
        rows.append(f"| zosnode flist create, {name} | {took:.2f} | {fb / MB / took:.1f} | "
                    f"{sbytes / MB:.1f} | {doc['rss_mib']:.0f} |")
    for comp, (took, sbytes) in casync.items():
        rows.append(f"| casync make --compression={comp} | {took:.2f} | {fb / MB / took:.1f} | "
                    f"{sbytes / MB:.1f} | |")
    ratio = casync["zstd"][0] / base_time
    rows.append(f"\nRatio zosnode (zstd) / casync (zstd) build throughput: **{ratio:.2f}x**; "
                f"zosnode (zlib, 1.0's default) / casync (gzip): "
                f"**{casync['gzip'][0] / results['zlib'][1]:.2f}x**.\n")
    return base_doc["id"], base_flist


def codec_table(work: Path, rows: list[str], lzma: bool) -> None:
    raw = [p.read_bytes() for p in sorted((work / "s-2-0" / "blocks").rglob("*"))
           if p.is_file()]
    raw_bytes = sum(len(b) for b in raw)
    rows.append("## Per-block cost of each codec and level (one thread, blocks in memory)\n")
    rows.append(f"All {len(raw)} blocks of the rootfs (content-defined chunks and packs), "
                f"{raw_bytes / MB:.1f} MB decoded. Encode = what the builder does per block "
                "(compress, encrypt, hash); decode = what a node does (hash check, decrypt, "
                "decompress). The zstd level is chosen from these rows "
                "(docs/flist-format.md).\n")
    rows.append("| option | encode MB/s | decode MB/s | stored/decoded |")
    rows.append("|---|---:|---:|---:|")
    codecs: list[tuple[str, Compression, bool, int | None]] = [
        ("none", Compression.NONE, False, None), ("none + encrypt", Compression.NONE, True, None),
        ("zlib 6 (1.0's default)", Compression.ZLIB, False, None),
        ("zlib + encrypt", Compression.ZLIB, True, None),
        ("bz2 9", Compression.BZ2, False, None),
    ]
    codecs += [(f"zstd {lv}" + (" (default)" if lv == 3 else ""), Compression.ZSTD, False, lv)
               for lv in (1, 2, 3, 5, 9, 12, 19)]
    codecs.append(("zstd 3 + encrypt", Compression.ZSTD, True, 3))
    if lzma:
        codecs.append(("lzma 6", Compression.LZMA, False, None))
    for name, comp, enc, level in codecs:
        t = time.perf_counter()
        encoded = [encode_block(b, comp, enc, level) for b in raw]
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        for e in encoded:
            decode_block(e.ref(0, 1), e.stored)
        t_dec = time.perf_counter() - t
        ratio = sum(len(e.stored) for e in encoded) / raw_bytes
        rows.append(f"| {name} | {raw_bytes / MB / t_enc:.1f} | {raw_bytes / MB / t_dec:.1f} "
                    f"| {ratio:.3f} |")
    rows.append("")


def extract_table(base_flist: Flist, work: Path, fb: int, rows: list[str]) -> None:
    from zosnode.flist.extract import extract
    from zosnode.flist.view import FlistView

    t = time.perf_counter()
    extract(FlistView(base_flist), LocalStore(work / "s-0-0"), work / "x-ours")
    ours_x = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(["casync", "extract", f"--store={work / 'ca-zstd-0'}",
                    str(work / "base-zstd.caidx"), str(work / "x-ca")],
                   check=True, capture_output=True)
    ca_x = time.perf_counter() - t
    rows.append("## Extraction into a directory (every block verified)\n")
    rows.append("| extractor | time s | MB/s |")
    rows.append("|---|---:|---:|")
    rows.append(f"| zosnode extract (zstd store, in process) | {ours_x:.2f} | "
                f"{fb / MB / ours_x:.1f} |")
    rows.append(f"| casync extract (zstd store) | {ca_x:.2f} | {fb / MB / ca_x:.1f} |")
    rows.append(f"\nRatio zosnode / casync extraction throughput: **{ca_x / ours_x:.2f}x**.\n")


def dedupe_table(base: Path, plus: Path, work: Path, rows: list[str]) -> None:
    store = work / "dedupe"
    a_doc, _ = cli_create(base, store)
    b_doc, _ = cli_create(plus, store)
    a, b = load(store, a_doc["id"]), load(store, b_doc["id"])
    nblocks, nbytes = fetch_bytes(a, b)
    cstore = work / "ca-dedupe"
    casync_make(base, cstore, work / "a.caidx", "zstd")
    casync_make(plus, cstore, work / "b.caidx", "zstd")
    after = chunk_sizes(cstore)
    a_chunks = set(caidx_chunks(work / "a.caidx"))
    b_chunks = set(caidx_chunks(work / "b.caidx"))
    if any(c not in after for c in b_chunks):
        raise RuntimeError("caidx parse gave ids not in the store")
    ca_fetch = sum(after[c] for c in b_chunks - a_chunks)
    pst = flist_stats(b)
    rows.append("## Dedupe: minbase, then minbase + " + ", ".join(EXTRA) + "\n")
    rows.append(f"Second tree: {pst.file_bytes / MB:.1f} MB of file bytes; stored size of "
                f"everything it references: zosnode {pst.stored_bytes / MB:.1f} MB.\n")
    rows.append("| | store growth for the 2nd MB | a node holding the 1st fetches MB "
                "| requests |")
    rows.append("|---|---:|---:|---:|")
    rows.append(f"| zosnode (zstd, CDC) | {b_doc['new_bytes'] / MB:.2f} | {nbytes / MB:.2f} | "
                f"{nblocks} |")
    rows.append(f"| casync (zstd, default 64 KiB chunks) | {ca_fetch / MB:.2f} | "
                f"{ca_fetch / MB:.2f} | {len(b_chunks - a_chunks)} |")
    rows.append(f"\nRatio of bytes fetched, zosnode / casync: "
                f"**{nbytes / max(ca_fetch, 1):.2f}**.\n")


def insert_table(work: Path, image_mib: int, rows: list[str]) -> None:
    size = image_mib * MiB
    where = tuple(i / 10 for i in range(1, 10))
    d1 = work / "img-v1"
    d1.mkdir()
    write_image(d1 / "disk.img", size, None)
    store, fixed_store, cstore = work / "img-store", work / "img-fixed", work / "img-castr"
    v1_doc, t1 = cli_create(d1, store, "--fine-chunks")
    f1_doc, _ = cli_create(d1, fixed_store, "--chunking", "fixed")
    c1 = casync_make(d1 / "disk.img", cstore, work / "v1.caibx", "zstd")
    v1, f1 = load(store, v1_doc["id"]), load(fixed_store, f1_doc["id"])
    old = set(caidx_chunks(work / "v1.caibx"))
    sweep = [(256, 1024, 4096, 1), (16, 64, 256, 1), (8, 64, 256, 2)]
    sweep_v1 = {}
    for cfg in sweep:
        opts = _cdc_options(*cfg)
        sweep_v1[cfg] = (opts, ours(d1, work / f"img-sweep-{cfg[1]}-{cfg[3]}", opts)[0])
    ours_fetch, fixed_fetch, ca_fetch = [], [], []
    sweep_fetch: dict[tuple[int, ...], list[tuple[int, int, int]]] = {c: [] for c in sweep}
    t2 = c2 = 0.0
    rss = 0.0
    v2_blocks = ca_chunks = fixed_total = flist_size = caibx_size = 0
    for i, w in enumerate(where):
        d2 = work / f"img-v2-{i}"
        d2.mkdir()
        write_image(d2 / "disk.img", size, int(size * w))
        v2_doc, t2 = cli_create(d2, store, "--fine-chunks")
        rss = max(rss, v1_doc["rss_mib"], v2_doc["rss_mib"])
        v2 = load(store, v2_doc["id"])
        ours_fetch.append(fetch_bytes(v1, v2))
        v2_blocks = flist_stats(v2).blocks
        flist_size = len(encode(v2))
        f2_doc, _ = cli_create(d2, fixed_store, "--chunking", "fixed")
        f2 = load(fixed_store, f2_doc["id"])
        fixed_fetch.append(fetch_bytes(f1, f2))
        fixed_total = flist_stats(f2).blocks
        index = work / f"v2-{i}.caibx"
        c2 = casync_make(d2 / "disk.img", cstore, index, "zstd")
        sizes = chunk_sizes(cstore)
        new = caidx_chunks(index)
        ca_chunks = len(new)
        caibx_size = index.stat().st_size
        fresh = set(new) - old
        ca_fetch.append((len(fresh), sum(sizes[c] for c in fresh)))
        for cfg in sweep:
            opts, a = sweep_v1[cfg]
            b, _, _ = ours(d2, work / f"img-sweep-{cfg[1]}-{cfg[3]}", opts)
            n, nb = fetch_bytes(a, b)
            sweep_fetch[cfg].append((n, nb, flist_stats(b).blocks))
        shutil.rmtree(d2)

    def mean(xs: list[tuple[int, int]], k: int) -> float:
        return sum(x[k] for x in xs) / len(xs)

    ours_mb, ca_mb = mean(ours_fetch, 1) / MB, mean(ca_fetch, 1) / MB
    rows.append(f"## A {image_mib} MiB file with 4 KiB inserted\n")
    rows.append("Pseudo-random (incompressible) bytes, seeded; version 2 is version 1 with "
                "4 KiB of other bytes inserted at a tenth, two tenths, ... nine tenths "
                "of the file (nine pairs, means below). Fetched = the stored bytes of the "
                "blocks of version 2's flist that version 1's lacks (what a node holding "
                "version 1 downloads); for casync the bytes of the new chunks in the .castr "
                "store (chunks of v2.caibx not in v1.caibx). One build each: "
                f"zosnode {t1:.1f} s then {t2:.1f} s (peak RSS {rss:.0f} MiB), casync "
                f"{c1:.1f} s then {c2:.1f} s. The index a node fetches besides: zosnode's "
                f"flist {flist_size / MB:.2f} MB, casync's .caibx {caibx_size / MB:.2f} MB.\n")
    rows.append("| | fetched MB (each pair) | mean MB | new blocks / chunks "
                "| blocks / chunks in the file |")
    rows.append("|---|---:|---:|---:|---:|")

    def each(xs: list[tuple[int, int]]) -> str:
        return " / ".join(f"{x[1] / MB:.3f}" for x in xs)

    rows.append(f"| zosnode flist create --fine-chunks (from 64 MiB: CDC 8 / 48 / 256 KiB, NC 2) | "
                f"{each(ours_fetch)} | {ours_mb:.3f} | {mean(ours_fetch, 0):.1f} | "
                f"{v2_blocks} |")
    rows.append(f"| zosnode flist create --chunking fixed (1.0's 1 MiB offsets) | "
                f"{each(fixed_fetch)} | {mean(fixed_fetch, 1) / MB:.1f} | "
                f"{mean(fixed_fetch, 0):.0f} | {fixed_total} |")
    rows.append(f"| casync make --compression=zstd (16 / 64 / 256 KiB) | {each(ca_fetch)} | "
                f"{ca_mb:.3f} | {mean(ca_fetch, 0):.1f} | {ca_chunks} |")
    rows.append(f"\nRatio of bytes fetched, zosnode / casync (means): "
                f"**{ours_mb / max(ca_mb, 1e-9):.2f}x**.\n")
    # The trade-off: smaller content-defined chunks fetch fewer bytes after an
    # insertion and cost more requests to read the file.
    rows.append("Content-defined chunk size against bytes fetched and requests (in process, "
                "no compression; the same nine pairs, means; NC = FastCDC's normalisation):\n")
    rows.append("| CDC min / avg / max KiB, NC | fetched MB | new blocks | blocks per GiB "
                "| fetched / casync |")
    rows.append("|---:|---:|---:|---:|---:|")
    for cfg in sweep:
        lo, avg, hi, nc = cfg
        xs = sweep_fetch[cfg]
        blocks = xs[-1][2]
        fetched = sum(x[1] for x in xs) / len(xs) / MB
        rows.append(f"| {lo} / {avg} / {hi}, {nc} | {fetched:.3f} | "
                    f"{sum(x[0] for x in xs) / len(xs):.1f} | {blocks * 1024 / image_mib:.0f} | "
                    f"{fetched / max(ca_mb, 1e-9):.2f}x |")
    rows.append("")
    for p in (d1, store, cstore, fixed_store,
              *(work / f"img-sweep-{c[1]}-{c[3]}" for c in sweep)):
        shutil.rmtree(p, ignore_errors=True)


def _cdc_options(lo: int, avg: int, hi: int, nc: int) -> BuildOptions:
    """One set of content-defined sizes (KiB) for every large file, no compression."""
    return BuildOptions(compression=Compression.NONE, cdc_min=lo * 1024, cdc_avg=avg * 1024,
                        cdc_max=hi * 1024, cdc_normalization=nc, cdc_fine_from=None)


def _ca_cuts(work: Path, data: bytes) -> list[tuple[int, int]]:
    """casync's (offset, length) chunks of `data`, from the end offsets in its .caibx."""
    img, index = work / "pts.img", work / "pts.caibx"
    img.write_bytes(data)
    subprocess.run(["casync", "make", f"--store={work / 'pts-castr'}", str(index), str(img)],
                   check=True, capture_output=True)
    body = index.read_bytes()[64:-40]
    out, prev = [], 0
    for i in range(0, len(body), 40):
        end = int.from_bytes(body[i:i + 8], "little")
        out.append((prev, end - prev))
        prev = end
    img.unlink()
    index.unlink()
    return out


def points_table(work: Path, rows: list[str], n: int = 300) -> None:
    """Many insertion points, cheaply: each tool's cuts of version 1 once, then for
    each point only [a cut 1 MiB before it, a cut 3 MiB after it) of version 2 is
    chunked (both chunkers start afresh after a cut, so these are the cuts the whole
    file would get, checked for casync below); fetched = raw bytes of its chunks that
    version 1 lacks."""
    import bisect
    import hashlib

    from pyfastcdc import FastCDC

    size = 256 * MiB
    r = random.Random(1)
    base = b"".join(r.randbytes(64 * MiB) for _ in range(size // (64 * MiB)))
    ins = random.Random(2).randbytes(4096)
    pts = [random.Random(3 + i).randrange(4 * MiB, size - 8 * MiB) for i in range(n)]

    def h(b: bytes) -> bytes:
        return hashlib.blake2b(b, digest_size=16).digest()

    def run(chunk: Any, full: list[tuple[int, int]]) -> tuple[float, float, float, int]:
        ends = [o + ln for o, ln in full]
        tb = tn = most = 0
        for p in pts:
            i = bisect.bisect_left(ends, p - MiB)
            j = bisect.bisect_left(ends, p + 3 * MiB)
            old = {h(base[o:o + ln]) for o, ln in full[i + 1:j + 1]}
            seg = base[ends[i]:p] + ins + base[p:ends[j]]
            new = [ln for o, ln in chunk(seg) if h(seg[o:o + ln]) not in old]
            tb, tn, most = tb + sum(new), tn + len(new), max(most, len(new))
        return tb / n / MB, tn / n, len(full) * 1024 * MiB / size, most

    def cdc(cfg: tuple[int, int, int, int]) -> Any:
        lo, avg, hi, nc = cfg
        return lambda b: [(c.offset, c.length) for c in FastCDC(
            avg * 1024, min_size=lo * 1024, max_size=hi * 1024, normalized_chunking=nc,  # type: ignore[arg-type]
        ).cut_buf(b)]

    full = _ca_cuts(work, base)
    ends = [o + ln for o, ln in full]
    part = _ca_cuts(work, base[ends[100]:ends[100] + 4 * MiB])
    if [o + ends[100] for o, _ in part[:-1]] != [o for o, _ in full[101:100 + len(part)]]:
        raise RuntimeError("casync's cuts of a slice from a cut differ from the whole file's")
    results = [("casync (16 / 64 / 256 KiB)", run(lambda b: _ca_cuts(work, b), full))]
    for cfg in [(256, 1024, 4096, 1), (16, 64, 256, 0), (16, 64, 256, 1), (16, 64, 256, 2),
                (16, 64, 256, 3), (8, 64, 256, 2), (8, 48, 256, 1), (8, 48, 256, 2),
                (16, 32, 256, 1)]:
        mark = " (default from 64 MiB)" if cfg == (8, 48, 256, 2) else (
            " (default below 64 MiB)" if cfg == (256, 1024, 4096, 1) else "")
        results.append((f"FastCDC {cfg[0]} / {cfg[1]} / {cfg[2]} KiB, NC {cfg[3]}{mark}",
                        run(cdc(cfg), cdc(cfg)(base))))
    shutil.rmtree(work / "pts-castr", ignore_errors=True)
    ca_mb = results[0][1][0]
    rows.append(f"## 4 KiB inserted at {n} points of a 256 MiB file\n")
    rows.append("Pseudo-random bytes; each point chunked as described in `points_table` "
                "(bench/flist_build.py); raw bytes, no compression. The chunk an insertion "
                "lands in is a size-biased pick (large chunks are hit more often), so a "
                "narrower spread of sizes (FastCDC's normalisation, NC) fetches less for the "
                "same chunk count, until NC 3, whose non-nested masks make a cut pushed "
                "across the target size vanish and the chunks after it differ too.\n")
    rows.append("| chunker | fetched MB (mean) | new chunks (mean) | most new chunks "
                "| chunks per GiB | fetched / casync |")
    rows.append("|---|---:|---:|---:|---:|---:|")
    for name, (mb, nb, per_gib, most) in results:
        rows.append(f"| {name} | {mb:.4f} | {nb:.2f} | {most} | {per_gib:.0f} | "
                    f"{mb / ca_mb:.2f}x |")
    rows.append("")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the fixed block-size sweep")
    ap.add_argument("--lzma", action="store_true", help="also time lzma (about two minutes)")
    ap.add_argument("--no-plus", action="store_true",
                    help="skip the dedupe pair (needs a second debootstrap, cached)")
    ap.add_argument("--image-mib", type=int, default=1024,
                    help="size of the large file of the insertion test (default 1024)")
    ap.add_argument("--points", type=int, default=300,
                    help="insertion points of the 256 MiB file (default 300)")
    args = ap.parse_args()
    if shutil.which("casync") is None:
        print("casync is not installed (apt-get install casync)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="flist-bench-", dir=REPO / "work"))
    rows: list[str] = []
    try:
        base = unpack_rootfs(rootfs_tarball(), work / "base")
        warm(base)
        _, base_flist = build_table(base, work, rows, args.lzma)
        fb = flist_stats(base_flist).file_bytes
        codec_table(work, rows, args.lzma)
        extract_table(base_flist, work, fb, rows)
        if not args.no_plus:
            plus = unpack_rootfs(rootfs_tarball(EXTRA), work / "plus")
            warm(plus)
            dedupe_table(base, plus, work, rows)
        insert_table(work, args.image_mib, rows)
        points_table(work, rows, args.points)

        st = flist_stats(base_flist)
        a_chunks = set(caidx_chunks(work / "base-zstd.caidx"))
        files = st.by_kind.get("reg", 0)
        rows.append("## Requests to read every file of the rootfs once\n")
        rows.append("| | requests | per file |")
        rows.append("|---|---:|---:|")
        rows.append(f"| regular files | {files} | 1 |")
        rows.append(f"| zosnode blocks | {st.blocks} | {st.blocks / files:.3f} |")
        rows.append(f"| casync chunks | {len(a_chunks)} | {len(a_chunks) / files:.3f} |\n")

        if not args.quick and not args.no_plus:
            plus = work / "plus"
            rows.append("## Block-size sweep (fixed chunks, no compression, so bytes are raw)\n")
            rows.append("| chunk KiB | pack min-max KiB | small max KiB | blocks (requests) "
                        "| fetch for 2nd MB | blocks to fetch |")
            rows.append("|---:|---:|---:|---:|---:|---:|")
            for chunk, pmin, pmax, small in [
                (256, 64, 256, 32), (1024, 256, 1024, 128), (4096, 1024, 4096, 512),
            ]:
                opts = BuildOptions(compression=Compression.NONE, chunking="fixed",
                                    chunk_size=chunk * 1024, pack_min=pmin * 1024,
                                    pack_max=pmax * 1024, small_max=small * 1024)
                sw = work / f"sweep-{chunk}-{pmin}"
                fa, _, _ = ours(base, sw, opts)
                fbb, _, _ = ours(plus, sw, opts)
                n, b = fetch_bytes(fa, fbb)
                rows.append(f"| {chunk} | {pmin}-{pmax} | {small} | {flist_stats(fa).blocks} "
                            f"| {b / MB:.2f} | {n} |")
            rows.append("")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    load1 = os.getloadavg()[0]
    flags = " ".join(f for f, on in (("--quick", args.quick), ("--lzma", args.lzma),
                                     ("--no-plus", args.no_plus)) if on)
    header = [
        "# flist benchmarks",
        "",
        f"Command: `python3 bench/flist_build.py{' ' + flags if flags else ''}` (as root; the "
        "rootfs comes from debootstrap, cached under work/cache/). Machine: "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load1:.1f} at the "
        "end. Other jobs may share the machine: compare the ratios, measured in the same run, "
        "more than the absolute times.",
        "",
    ]
    text = "\n".join(header + rows) + "\n"
    print(text)
    out = REPO / "bench" / "flist.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
