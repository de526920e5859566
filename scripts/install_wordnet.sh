#!/usr/bin/env bash
# Make WordNet 3.0 available to nltk at <repo>/.nltk_data without internet access.
#
# Used only to rebuild/verify the packaged taxonomy snapshot (hsc/data); running uebench never needs it.
# Steps: (1) nothing to do if nltk already finds WordNet with NLTK_DATA=<repo>/.nltk_data; (2) as root, install
# Debian's `wordnet-base` and `wordnet-sense-index` when /usr/share/wordnet is missing; (3) copy the database
# files (copies, not symlinks: nltk's path checks reject links) into .nltk_data/corpora/wordnet and write the
# `lexnames` file nltk needs, which Debian does not ship. Idempotent; exits 0 with one line when it cannot.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nltk_data="${repo}/.nltk_data"
target="${nltk_data}/corpora/wordnet"
source_dir="/usr/share/wordnet"
python="${repo}/.venv/bin/python"
[[ -x "${python}" ]] || python="$(command -v python3 || true)"

# Quick check (~1 s): nltk resolves the corpus files and the database says it is WordNet 3.0.
wordnet_files_found() {
    [[ -n "${python}" ]] || return 1
    NLTK_DATA="${nltk_data}" "${python}" - <<'EOF' >/dev/null 2>&1
import re

import nltk

for name in ("lexnames", "index.noun", "data.noun", "noun.exc", "data.adj", "data.verb", "data.adv"):
    nltk.data.find(f"corpora/wordnet/{name}")
with open(nltk.data.find("corpora/wordnet/data.noun"), "rb") as handle:
    assert re.search(rb"WordNet 3\.0 Copyright", handle.read(4096))
EOF
}

# Full check (~5 s): nltk loads the database and finds dog.n.01 at its WordNet 3.0 offset.
wordnet_loads() {
    [[ -n "${python}" ]] || return 1
    NLTK_DATA="${nltk_data}" "${python}" - <<'EOF' >/dev/null 2>&1
from nltk.corpus import wordnet

assert wordnet.get_version() == "3.0"
assert wordnet.synset_from_pos_and_offset("n", 2084071).name() == "dog.n.01"
EOF
}

if wordnet_files_found; then
    echo "install_wordnet: WordNet 3.0 already available in ${nltk_data}"
    exit 0
fi

if [[ ! -f "${source_dir}/data.noun" || ! -f "${source_dir}/index.sense" ]]; then
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install_wordnet: skipped: ${source_dir} missing and cannot apt-get install wordnet-base wordnet-sense-index (needs root + apt-get)"
        exit 0
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        wordnet-base wordnet-sense-index >/dev/null; then
        echo "install_wordnet: skipped: apt-get install wordnet-base wordnet-sense-index failed"
        exit 0
    fi
fi

if ! mkdir -p "${target}" 2>/dev/null || [[ ! -w "${target}" ]]; then
    echo "install_wordnet: skipped: cannot write ${target}"
    exit 0
fi
for name in data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv \
    noun.exc verb.exc adj.exc adv.exc index.sense cntlist.rev; do
    if [[ -f "${source_dir}/${name}" ]]; then
        cp --dereference --preserve=timestamps "${source_dir}/${name}" "${target}/${name}.tmp"
        mv -f "${target}/${name}.tmp" "${target}/${name}"
    fi
done

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb).
lexnames=(
    adj.all:3 adj.pert:3 adv.all:4 noun.Tops:1 noun.act:1 noun.animal:1 noun.artifact:1 noun.attribute:1
    noun.body:1 noun.cognition:1 noun.communication:1 noun.event:1 noun.feeling:1 noun.food:1 noun.group:1
    noun.location:1 noun.motive:1 noun.object:1 noun.person:1 noun.phenomenon:1 noun.plant:1
    noun.possession:1 noun.process:1 noun.quantity:1 noun.relation:1 noun.shape:1 noun.state:1
    noun.substance:1 noun.time:1 verb.body:2 verb.change:2 verb.cognition:2 verb.communication:2
    verb.competition:2 verb.consumption:2 verb.contact:2 verb.creation:2 verb.emotion:2 verb.motion:2
    verb.perception:2 verb.possession:2 verb.social:2 verb.stative:2 verb.weather:2 adj.ppl:3
)
: >"${target}/lexnames.tmp"
for i in "${!lexnames[@]}"; do
    printf '%02d\t%s\t%s\n' "${i}" "${lexnames[$i]%%:*}" "${lexnames[$i]##*:}" >>"${target}/lexnames.tmp"
done
mv -f "${target}/lexnames.tmp" "${target}/lexnames"

if wordnet_loads; then
    echo "install_wordnet: WordNet 3.0 installed for nltk in ${target}"
else
    echo "install_wordnet: skipped: copied ${source_dir} to ${target} but nltk still cannot read WordNet 3.0"
fi
