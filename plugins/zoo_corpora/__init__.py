"""zoo's built-in plugin for text corpora: the lesson's Nietzsche and an offline corpus."""

from zoo import hookimpl
from zoo.data.sources import DownloadedText, PydocTopics

NIETZSCHE = DownloadedText(
    name="nietzsche",
    summary="Nietzsche's writings in English (600,893 chars, 84 distinct), the lesson's corpus; downloaded once",
    url="https://s3.amazonaws.com/text-datasets/nietzsche.txt",
    sha256="23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647",
    filename="nietzsche.txt",
    n_chars=600_893,
    license="public domain (Project Gutenberg texts)",
)


@hookimpl
def zoo_register_datasets(register):
    register(NIETZSCHE)
    register(PydocTopics())
