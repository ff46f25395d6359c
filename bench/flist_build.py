"""flist benchmarks against casync on a real Debian rootfs, in one run.

    python3 bench/flist_build.py [--quick]

1. Build throughput (MB/s of file bytes) of `zosnode flist create` vs `casync make`.
2. Cost of compression and convergent encryption (time and stored bytes).
3. Dedupe between two related trees (minbase, then minbase + curl, less, procps):
   store growth for the second, and bytes a node holding the first must fetch
   for the second, against casync's chunk store on the same pair.
4. Requests needed to read every file once (distinct blocks / chunks) vs file count.
5. The block-size sweep behind the defaults in docs/flist-format.md.

Writes bench/flist.md. Needs root (debootstrap; cached under work/cache/).
"""

from __future__ import annotations

import argparse
import os
import platform
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
from zosnode.flist.format import Flist  # noqa: E402
from zosnode.flist.pack import BuildOptions  # noqa: E402
from zosnode.flist.stats import fetch_bytes, flist_stats  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.writer import encode, encode_block  # noqa: E402

EXTRA = ("curl", "less", "procps")
MB = 1_000_000


def warm(tree: Path) -> None:
    """Read every file once so both tools start from the page cache."""
    for dirpath, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    while fh.read(1 << 20):
                        pass


def ours(tree: Path, store: Path, options: BuildOptions) -> tuple[Flist, Any, float]:
    t = time.perf_counter()
    flist, stats = build_from(str(tree), LocalStore(store), options)
    LocalStore(store).put_flist(encode(flist))
    return flist, stats, time.perf_counter() - t


def casync_make(tree: Path, store: Path, index: Path, compression: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        ["casync", "make", f"--store={store}", f"--compression={compression}",
         str(index), str(tree)], check=True, capture_output=True,
    )
    return time.perf_counter() - t


def caidx_chunks(index: Path) -> list[str]:
    """Chunk ids in a casync index: 48-byte header, 16-byte table header,
    40-byte items (u64 end offset, 32-byte id), 40-byte tail."""
    data = index.read_bytes()
    body = data[64:-40]
    if len(body) % 40:
        raise RuntimeError(f"{index}: unexpected caidx layout")
    return [body[i + 8 : i + 40].hex() for i in range(0, len(body), 40)]


def chunk_sizes(store: Path) -> dict[str, int]:
    out = {}
    for p in store.rglob("*.cacnk"):
        out[p.name.removesuffix(".cacnk")] = p.stat().st_size
    return out


def dir_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the block-size sweep")
    ap.add_argument("--lzma", action="store_true", help="also time lzma (about a minute)")
    args = ap.parse_args()
    if shutil.which("casync") is None:
        print("casync is not installed (apt-get install casync)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="flist-bench-", dir=REPO / "work"))
    rows: list[str] = []
    try:
        base = unpack_rootfs(rootfs_tarball(), work / "base")
        plus = unpack_rootfs(rootfs_tarball(EXTRA), work / "plus")
        warm(base)
        warm(plus)

        # 1 + 2: throughput and option costs ------------------------------
        builds = [
            ("zlib (default)", BuildOptions()),
            ("none", BuildOptions(compression=Compression.NONE)),
            ("zlib + encrypt", BuildOptions(encrypt=True)),
        ]
        if args.lzma:
            builds.append(("lzma", BuildOptions(compression=Compression.LZMA)))
        results = {}
        # Best of two runs each, into fresh stores, for both tools.
        for name, opts in builds:
            best = None
            for attempt in range(2):
                store = work / f"s-{len(results)}-{attempt}"
                flist, stats, took = ours(base, store, opts)
                if best is None or took < best[2]:
                    best = (flist, stats, took, dir_bytes(store / "blocks"))
            assert best is not None
            results[name] = best
        ca_gz = min(casync_make(base, work / f"ca-gz{i}", work / "base-gz.caidx", "gzip")
                    for i in range(2))
        ca_zstd = min(casync_make(base, work / f"ca-zstd{i}", work / "base-zstd.caidx", "zstd")
                      for i in range(2))
        base_flist, base_stats, base_time, _ = results["zlib (default)"]
        fb = base_stats.file_bytes
        st = flist_stats(base_flist)
        rows.append("## Build throughput on Debian bookworm minbase\n")
        rows.append(f"Tree: {st.entries} entries, {st.by_kind.get('reg', 0)} regular files, "
                    f"{fb / MB:.1f} MB of file bytes (page cache warm).\n")
        rows.append("| builder | time s | MB/s | store MB |")
        rows.append("|---|---:|---:|---:|")
        for name, (_, _, took, sbytes) in results.items():
            rows.append(f"| zosnode flist create, {name} | {took:.2f} | {fb / MB / took:.1f} | "
                        f"{sbytes / MB:.1f} |")
        rows.append(f"| casync make --compression=gzip | {ca_gz:.2f} | {fb / MB / ca_gz:.1f} | "
                    f"{dir_bytes(work / 'ca-gz0') / MB:.1f} |")
        rows.append(f"| casync make --compression=zstd | {ca_zstd:.2f} | "
                    f"{fb / MB / ca_zstd:.1f} | {dir_bytes(work / 'ca-zstd0') / MB:.1f} |")
        rows.append(f"\nRatio zosnode (zlib) / casync (gzip) throughput: "
                    f"**{ca_gz / base_time:.2f}x**; vs casync (zstd): "
                    f"**{ca_zstd / base_time:.2f}x**.\n")

        # 1a: per-block CPU cost of each option, no I/O ----------------------
        raw = [p.read_bytes() for p in sorted((work / "s-1-0" / "blocks").rglob("*"))
               if p.is_file()]
        raw_bytes = sum(len(b) for b in raw)
        rows.append("## Per-block cost of each option (one thread, blocks in memory)\n")
        rows.append(f"All {len(raw)} blocks of the rootfs, {raw_bytes / MB:.1f} MB decoded. "
                    "Encode = what the builder does per block; decode = what a node does "
                    "(hash check, decrypt, decompress).\n")
        rows.append("| option | encode MB/s | decode MB/s | stored/decoded |")
        rows.append("|---|---:|---:|---:|")
        codecs = [("none", Compression.NONE, False), ("none + encrypt", Compression.NONE, True),
                  ("zlib", Compression.ZLIB, False), ("zlib + encrypt", Compression.ZLIB, True),
                  ("bz2", Compression.BZ2, False)]
        if args.lzma:
            codecs.append(("lzma", Compression.LZMA, False))
        for name, comp, enc in codecs:
            t = time.perf_counter()
            encoded = [encode_block(b, comp, enc) for b in raw]
            t_enc = time.perf_counter() - t
            t = time.perf_counter()
            for e in encoded:
                decode_block(e.ref(0, 1), e.stored)
            t_dec = time.perf_counter() - t
            ratio = sum(len(e.stored) for e in encoded) / raw_bytes
            rows.append(f"| {name} | {raw_bytes / MB / t_enc:.1f} | {raw_bytes / MB / t_dec:.1f} "
                        f"| {ratio:.3f} |")
        rows.append("")

        # 1b: extraction (what a node without FUSE does) -----------------
        from zosnode.flist.extract import extract
        from zosnode.flist.view import FlistView

        t = time.perf_counter()
        extract(FlistView(base_flist), LocalStore(work / "s-0-0"), work / "x-ours")
        ours_x = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(["casync", "extract", f"--store={work / 'ca-gz0'}",
                        str(work / "base-gz.caidx"), str(work / "x-ca")],
                       check=True, capture_output=True)
        ca_x = time.perf_counter() - t
        rows.append("## Extraction into a directory (every block verified)\n")
        rows.append("| extractor | time s | MB/s |")
        rows.append("|---|---:|---:|")
        rows.append(f"| zosnode flist extract (zlib store) | {ours_x:.2f} | "
                    f"{fb / MB / ours_x:.1f} |")
        rows.append(f"| casync extract (gzip store) | {ca_x:.2f} | {fb / MB / ca_x:.1f} |")
        rows.append(f"\nRatio zosnode / casync extraction throughput: **{ca_x / ours_x:.2f}x**.\n")

        # 3: dedupe between versions --------------------------------------
        store = work / "dedupe"
        _, s1, _ = ours(base, store, BuildOptions())
        plus_flist, s2, _ = ours(plus, store, BuildOptions())
        nblocks, nbytes = fetch_bytes(base_flist, plus_flist)
        cstore = work / "ca-dedupe"
        casync_make(base, cstore, work / "a.caidx", "gzip")
        before = chunk_sizes(cstore)
        casync_make(plus, cstore, work / "b.caidx", "gzip")
        after = chunk_sizes(cstore)
        a_chunks = set(caidx_chunks(work / "a.caidx"))
        b_chunks = set(caidx_chunks(work / "b.caidx"))
        missing = [c for c in b_chunks if c not in after]
        if missing:
            raise RuntimeError(f"caidx parse gave {len(missing)} ids not in the store")
        ca_growth = sum(v for k, v in after.items() if k not in before)
        ca_fetch = sum(after[c] for c in b_chunks - a_chunks)
        pst = flist_stats(plus_flist)
        rows.append("## Dedupe: minbase, then minbase + " + ", ".join(EXTRA) + "\n")
        rows.append(f"Second tree: {pst.file_bytes / MB:.1f} MB of file bytes; "
                    f"stored size of everything it references: zosnode "
                    f"{pst.stored_bytes / MB:.1f} MB.\n")
        rows.append("| | store growth for the 2nd MB | a node holding the 1st fetches MB "
                    "| requests |")
        rows.append("|---|---:|---:|---:|")
        rows.append(f"| zosnode (zlib) | {s2.new_bytes / MB:.2f} | {nbytes / MB:.2f} | "
                    f"{nblocks} |")
        rows.append(f"| casync (gzip, default 64 KiB chunks) | {ca_growth / MB:.2f} | "
                    f"{ca_fetch / MB:.2f} | {len(b_chunks - a_chunks)} |")
        rows.append(f"\nRatio of bytes fetched, zosnode / casync: "
                    f"**{nbytes / max(ca_fetch, 1):.2f}**.\n")

        # 4: requests to read everything ------------------------------------
        files = st.by_kind.get("reg", 0)
        rows.append("## Requests to read every file of the rootfs once\n")
        rows.append("| | requests | per file |")
        rows.append("|---|---:|---:|")
        rows.append(f"| regular files | {files} | 1 |")
        rows.append(f"| zosnode blocks | {st.blocks} | {st.blocks / files:.3f} |")
        rows.append(f"| casync chunks | {len(a_chunks)} | {len(a_chunks) / files:.3f} |\n")

        # 5: sweep ---------------------------------------------------------
        if not args.quick:
            rows.append("## Block-size sweep (no compression, so bytes are raw)\n")
            rows.append("| chunk KiB | pack min-max KiB | small max KiB | blocks (requests) "
                        "| fetch for 2nd MB | blocks to fetch |")
            rows.append("|---:|---:|---:|---:|---:|---:|")
            for chunk, pmin, pmax, small in [
                (256, 64, 256, 32), (1024, 256, 1024, 128), (4096, 1024, 4096, 512),
            ]:
                opts = BuildOptions(compression=Compression.NONE, chunk_size=chunk * 1024,
                                    pack_min=pmin * 1024, pack_max=pmax * 1024,
                                    small_max=small * 1024)
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
    header = [
        "# flist benchmarks",
        "",
        "Command: `python3 bench/flist_build.py" + (" --lzma" if args.lzma else "")
        + "` (as root; `--lzma` adds the slow lzma rows; the rootfs comes from",
        "debootstrap, cached under work/cache/). Machine: "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Other jobs may share the",
        "machine: compare the ratios, measured in the same run, more than the absolute times.",
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
