# Where the corpus lives: the directory that CONTAINS LibriSpeech/ (as extracted from
# openslr.org/12). Leave LIBRISPEECH empty to generate the embedded espeak-ng corpus
# (LibriSpeech layout, a few hours of speech) under downloads/embedded instead.
LIBRISPEECH=${LIBRISPEECH:-}
