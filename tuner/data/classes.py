"""Facts about Kaggle's 104-class flower data (see shared/petals-dataset.md)."""

from __future__ import annotations

NUM_CLASSES = 104

#: Class names by class id. The public lists carry trailing spaces on two names
#: ('cyclamen ', 'hippeastrum '); they are stripped here.
CLASS_NAMES: tuple[str, ...] = (
    'pink primrose', 'hard-leaved pocket orchid', 'canterbury bells', 'sweet pea',
    'wild geranium', 'tiger lily', 'moon orchid', 'bird of paradise', 'monkshood',
    'globe thistle', 'snapdragon', "colt's foot", 'king protea', 'spear thistle',
    'yellow iris', 'globe-flower', 'purple coneflower', 'peruvian lily',
    'balloon flower', 'giant white arum lily', 'fire lily', 'pincushion flower',
    'fritillary', 'red ginger', 'grape hyacinth', 'corn poppy',
    'prince of wales feathers', 'stemless gentian', 'artichoke', 'sweet william',
    'carnation', 'garden phlox', 'love in the mist', 'cosmos', 'alpine sea holly',
    'ruby-lipped cattleya', 'cape flower', 'great masterwort', 'siam tulip',
    'lenten rose', 'barberton daisy', 'daffodil', 'sword lily', 'poinsettia',
    'bolero deep blue', 'wallflower', 'marigold', 'buttercup', 'daisy',
    'common dandelion', 'petunia', 'wild pansy', 'primula', 'sunflower',
    'lilac hibiscus', 'bishop of llandaff', 'gaura', 'geranium', 'orange dahlia',
    'pink-yellow dahlia', 'cautleya spicata', 'japanese anemone', 'black-eyed susan',
    'silverbush', 'californian poppy', 'osteospermum', 'spring crocus', 'iris',
    'windflower', 'tree poppy', 'gazania', 'azalea', 'water lily', 'rose',
    'thorn apple', 'morning glory', 'passion flower', 'lotus', 'toad lily',
    'anthurium', 'frangipani', 'clematis', 'hibiscus', 'columbine', 'desert-rose',
    'tree mallow', 'magnolia', 'cyclamen', 'watercress', 'canna lily', 'hippeastrum',
    'bee balm', 'pink quill', 'foxglove', 'bougainvillea', 'camellia', 'mallow',
    'mexican petunia', 'bromelia', 'blanket flower', 'trumpet creeper',
    'blackberry lily', 'common tulip', 'wild rose',
)

#: Images per class in the real train split (sums to 12,753).
TRAIN_CLASS_COUNTS: tuple[int, ...] = (
    272, 26, 20, 21, 703, 87, 18, 105, 87, 84, 136, 43, 92, 263, 227, 21, 55, 50, 90,
    26, 19, 96, 48, 19, 85, 83, 21, 34, 119, 109, 105, 24, 23, 20, 18, 36, 57, 26, 19,
    73, 64, 96, 63, 110, 18, 172, 125, 261, 422, 563, 201, 105, 115, 460, 37, 58, 89,
    63, 36, 58, 27, 29, 93, 28, 55, 33, 21, 782, 260, 94, 104, 137, 167, 460, 125, 306,
    119, 139, 86, 118, 153, 101, 134, 112, 31, 29, 120, 146, 96, 46, 106, 111, 24, 139,
    131, 127, 100, 41, 34, 24, 31, 25, 390, 743,
)

#: Folder names Kaggle uses for each image size.
KAGGLE_SIZES: tuple[int, ...] = (192, 224, 331, 512)

#: Where Kaggle mounts the data inside a notebook (newest slug first).
KAGGLE_INPUT_DIRS: tuple[str, ...] = (
    "/kaggle/input/tpu-getting-started",
    "/kaggle/input/flower-classification-with-tpus",
)

assert len(CLASS_NAMES) == NUM_CLASSES and len(TRAIN_CLASS_COUNTS) == NUM_CLASSES
