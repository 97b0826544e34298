"""ESPnet's ASR task imported through ``espnet_import``: the modules it defers are not
loaded at start-up and still work when a config uses them."""

import subprocess
import sys

SCRIPT = r"""
import sys
import espnet_supernet.tasks.asr  # imports espnet2.tasks.asr through import_quietly
from espnet_supernet.espnet_import import DeferredModule
assert "inflect" not in sys.modules and "nltk" not in sys.modules, "loaded at start-up"
assert isinstance(sys.modules["g2p_en"], DeferredModule)
assert isinstance(sys.modules["tacotron_cleaner.cleaners"], DeferredModule)

# What torch does when it registers an operator (here: the lazy import of torch.onnx,
# which an encoder's first forward triggers): inspect scans sys.modules for __file__.
import inspect
import torch
torch.onnx.is_in_onnx_export()
inspect.getmodule(inspect.getmodule)
assert not hasattr(sys.modules["g2p_en"], "__file__")
assert isinstance(sys.modules["g2p_en"], DeferredModule), "loaded by a module scan"
assert isinstance(sys.modules["tacotron_cleaner.cleaners"], DeferredModule)
assert "inflect" not in sys.modules and "nltk" not in sys.modules, "loaded by a scan"

from espnet2.text.cleaner import TextCleaner
print(TextCleaner(["tacotron"])("Mr. Smith paid 42 dollars."))  # inflect spells the number
assert not isinstance(sys.modules["tacotron_cleaner.cleaners"], DeferredModule)
import espnet2.text.phoneme_tokenizer as phoneme_tokenizer
print(phoneme_tokenizer.g2p_en.G2p.__module__)
"""


def test_deferred_modules_load_on_first_use():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    cleaned, g2p_module = out.stdout.strip().splitlines()[-2:]
    assert cleaned == "MISTER SMITH PAID FORTY TWO DOLLARS.", cleaned
    assert g2p_module == "g2p_en.g2p"
