"""The fixed sample :func:`onnxfix.shapes.conditions.classify` evaluates conditions on
two or more dims at.

Rows of ``numpy.random.default_rng(SEED).integers(2, 257, size=200)``, drawn in order
(row ``k`` is the ``k``-th draw), stored minus 2 as bytes.  They are stored rather than
drawn because importing ``numpy.random`` cost 12 ms of every lint that met such a
condition (measured), a tenth of the whole analysis of a 1.2 GB HuBERT-large model.
``tests/test_conditions.py`` draws them again and compares: the sample, and so every
verdict, is the generator's.
"""

from __future__ import annotations

import numpy as np

SEED = 1654615998  # random.Random(0).randrange(2**31), the seed the verdicts were drawn with
SIZE = 200
ROWS = 8

_HEX = (
    "4f90fc7a61d3492cd74f609d490a36e52da5d25dc9026c8111db2ce25006e084c8f2898a069c183acccf"
    "c1aa5f776c76b0b0a82a43a9abbdd24fa37ec6da8ed8afe32f86c96cb7f564e45d7fe75d68b41cdf64fc"
    "af8076e13fa9451544e190cb182c1b3c36f36cb168d0a7991b9f76e9f2fb9c23466ca02e4f0cecc86c6d"
    "02f5bdf9a63b1e806d95ca79707f6f64c3964147102d58e6fd82162edaa4a574ad67fbce0ac14a5c283e"
    "fa95fa5f41b0ea2b7ed6842698dc1e3b45bf20cab4d387434cfa4826e520adb1a566a9f464aaab09e96c"
    "940fd9cbd46b320ffb694cfabe6ceb6d9c1d39f54f64a809fbc0f88bae5bf745b389f6da162ab98884ec"
    "6c82e58afe85ccde32b565dccc5ebacd2ec20733020d763afc7b5f5363bf1e1d885b8d31d48ad9fe4a76"
    "183149813ce87e891fd22d0fe52f40d51ccb12d38ddab2bb4abc084ef974efc11162c2f332359c1fb917"
    "aed0a91d97efb4a648ab5a5b99eaf5899e958ef143ddde4caef2ad690588ed65c838af22cef9c7440a14"
    "ba1f9e827c0be5e35adb112e1d6be045c74f093a0a9ac5984a45b975845fdcae2287413db59fa4b8ad92"
    "c6fd92a8cdd671395f6d84c182add3b2223e504d40bfa857bfb03f41a0621ab9c8b5d6a68bf671c0dbe9"
    "167cc07b2d48945a072548cb5ac0c6c48eda484e65fc16df113f70ee33b58d3f377ae677e65dbeb33852"
    "2d5db0c20d33e86e1cee4e210cead7422829aad352d710a965b180aeab465fbf12f36966c4536f9c9cfe"
    "3af2688859fdb7f6707322f750e5f67c32a89b5df22597558ad2c9b992bd2cb0335be095fcdd2e9b0774"
    "803488dfd7c69a130986e98cf6d3bf0f1deec217c176b8c790abed8f5e2ea548d9b3c610695c6919dbe9"
    "ef984db7e9097ee0d2e6678f34aa841aa4cf89f67848d230483be93a5aae6bea15e0044524fabb9e3d94"
    "a13762db53173f77f82300f110fe7b89d734263bc0e008d056bd8bfb02466d67d92eea5432fd47b67450"
    "aaac722cc927634bdbc1d6b5b50a107cf721383b53009bae9f4dd8b721b5389321088f4abdf7233cd066"
    "f76f9e80b8af9d543ebc9388b865957a9bb970fde0ac0b140c9168d844bbe059942c53e5475fcfeb3eb7"
    "b73ba1f949c559824a521e641f76c137b45feef36f805504da9ac67024c15bb0b4a811080a26e2c73bf4"
    "be6a97cb72fa1f48b22547131f883be32ec1852456dec78120398a13e51f551e3ef895a8150402190726"
    "591064eac402b63b3bd1ead18142d9999c5e96f0bc68e27cb982a3a1449096161a2544a351d3016e1213"
    "fa205b4915a0c031bb4369a8ae6e604ff5943bfd1e30c3dfd559f811296202f60b822790978f19fd19be"
    "516d24826c153e237e7e920b9643cdf144760e252d908052da1774ad65dbc269cb073a4abd627706ba9e"
    "7aa521053b10c1b66de672f28e9869e9037aa31d1c1da2c021dd545312bc7ab9b4f3e4c62a1c28a1c4be"
    "8c96ce33e64b78012fb56f26d5fd186a047a5ef0c4762234e7bacad649fc0bbbdd929afd3ea371909237"
    "948f4c2aeae0e2e0f81db47203cbe7f863470f80bb3297cddd92a6b3e529f538040edbaaa2b9cbbd0484"
    "7879850f7a02d907197bf4c51f4e2c2ada1313b4338edbeb7f13c23936059953d13bc6d072239e8e9840"
    "930d5fb9e6fbd08ae9c8328bc884db058d54a682c97955c2a145e9764fe5e95c217bb6049afbae43018b"
    "6caf23ddcaa1cddb7721f258afc5675fb52bf326bf178c5f89edd2eeed4b5154c4bbc46bf5a74c002e73"
    "bd023142b60170eb18cc130266bffb379a3ff1eb7d4d357caac2a95defbb8375cf74c463429f4e8640ea"
    "069aa8e086cee802cad88e067370dcdc460932aa32a835f2cf472e9cfc3d504f2e84ee20cb2260fb19d9"
    "3e69bb161efe433fed474f52d330763f6f00b92d4cda733eaf5e87006492701157dbfc02bedf4fb90408"
    "0c00477a98ccddadc4c66c2eb66482eb27c06f934fe4d953c3d35187fee697f22e90bba778dd22206bad"
    "72b975a48ed3a405766e094c975476650b7e5ea42fe2f57ad5811459f6183e58545611552b55084da94c"
    "beb24f2640bb2e1b4d8fc16db955cebf36b5a05bad9baefc1892473ada7cde3970c57ef7002a1f378f17"
    "47eebbc9abad6d2e0af5a88f0b5cf40101b1586e607063424c2d9ce8ae8223593c980cd358d922c4c6e5"
    "8d4ca8f63c31abbf5ede80e962649685a812df4fd5aa8d2022cbb8ce24a8ef1a41b73efed69c70b63c5b"
    "2e67a07d"
)


def rows(count: int) -> np.ndarray | None:
    """The first ``count`` rows (int64, values 2..256), or None beyond the stored ones."""
    if count > ROWS:
        return None
    flat = np.frombuffer(bytes.fromhex(_HEX), dtype=np.uint8)[: count * SIZE]
    return flat.astype(np.int64).reshape(count, SIZE) + 2
