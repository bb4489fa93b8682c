"""Writing into Mamut through Mamut's own Import/Export (``mamut.write_mode: import``).

:mod:`.formats` renders orders (GBAOX10), customers (GBACX10) and articles (GBAPX10) as the XML files the
Import/Export program reads, named by their content's identity; :mod:`.transport` puts a file where Mamut
imports it (a shared inbox a scheduled task watches, or SFTP plus the program run over SSH) and tells what
became of it. Whether Mamut really holds what a file said is only ever decided by reading Mamut over SQL
(the jobs' confirm pass in :mod:`starmamut.services.mamut_import`). ``gbax10.xsd`` beside this module is the
schema the files follow, written from the tag lists in docs/reference/mamut.md section 2.
"""
