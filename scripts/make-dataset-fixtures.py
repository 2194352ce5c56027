"""
Preference sets in the official IC-VCO dataset layout, written by Hugging Face `datasets` itself (as the
released OPPOer/IC-VCO-Dataset was), for the readers' tests:

  tests/fixtures/datasets/official/preference/train/metadata.parquet   3 valid rows
  tests/fixtures/datasets/official/images/*.png                         images referenced by path
  tests/fixtures/datasets/official-bad/preference/train/metadata.parquet  row 2 has no `chosen`

`images` is List(Image(decode=False)): structs {bytes, path}; row 1 carries its images' bytes (path a bare
file name, as `push_to_hub` leaves it), rows 2-3 only paths relative to the dataset root.

Run: python3 scripts/make-dataset-fixtures.py   (needs datasets, pillow)
"""
import io
import os
import shutil

import datasets
from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'datasets')


def scene(colour, shape):
    im = Image.new('RGB', (32, 32), (235, 235, 235))
    d = ImageDraw.Draw(im)
    if shape == 'circle':
        d.ellipse((8, 8, 24, 24), fill=colour)
    else:
        d.rectangle((8, 8, 24, 24), fill=colour)
    return im


def png(im):
    b = io.BytesIO()
    im.save(b, 'PNG')
    return b.getvalue()


ROWS = [
    ('a red circle', 'a blue circle', ('red', 'circle'), ('blue', 'circle')),
    ('a green square', 'a green circle', ('green', 'square'), ('green', 'circle')),
    ('a blue square', 'a red square', ('blue', 'square'), ('red', 'square')),
]


def write(folder, drop_chosen_row=None):
    out = os.path.join(ROOT, folder)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, 'images'))
    cols = {k: [] for k in ['prompt', 'chosen', 'rejected', 'images', 'chosen_response_spans', 'rejected_response_spans', 'id']}
    for i, (y, y2, m, mp) in enumerate(ROWS):
        ims = []
        for tag, spec in (('m', m), ('mprime', mp)):
            name = f'{i + 1}_{tag}.png'
            if i == 0:
                ims.append({'path': name, 'bytes': png(scene(*spec))})
            else:
                scene(*spec).save(os.path.join(out, 'images', name))
                ims.append({'path': f'images/{name}', 'bytes': None})
        # the span of what differs: the first word that differs, in characters
        wa, wb = y.split(' '), y2.split(' ')
        k = next(j for j in range(len(wa)) if wa[j] != wb[j])
        s1 = len(' '.join(wa[:k])) + (1 if k else 0)
        s2 = len(' '.join(wb[:k])) + (1 if k else 0)
        cols['prompt'].append('Describe the image.')
        cols['chosen'].append(None if drop_chosen_row == i + 1 else y)
        cols['rejected'].append(y2)
        cols['images'].append(ims)
        cols['chosen_response_spans'].append([[s1, s1 + len(wa[k])]])
        cols['rejected_response_spans'].append([[s2, s2 + len(wb[k])]])
        cols['id'].append(f'pair{i + 1}')
    features = datasets.Features({
        'prompt': datasets.Value('string'),
        'chosen': datasets.Value('string'),
        'rejected': datasets.Value('string'),
        'images': datasets.List(datasets.Image(decode=False)),
        'chosen_response_spans': datasets.List(datasets.List(datasets.Value('int64'))),
        'rejected_response_spans': datasets.List(datasets.List(datasets.Value('int64'))),
        'id': datasets.Value('string'),
    })
    ds = datasets.Dataset.from_dict(cols, features=features)
    os.makedirs(os.path.join(out, 'preference', 'train'))
    ds.to_parquet(os.path.join(out, 'preference', 'train', 'metadata.parquet'))


write('official')
write('official-bad', drop_chosen_row=2)
print('wrote', ROOT)
