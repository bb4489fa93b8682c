"""Example custom transforms, ready to list in a shop's ``transforms`` config (see plugins/README.md).

* ``transforms.prices.round_to_whole_kronor`` — prices in whole kronor/kroner.
* ``transforms.sku.SkuPrefixMap`` — SKU prefix mapping between Starweb and Mamut.
* ``transforms.skip.SkipSkus`` — leave out records whose SKU matches a pattern.
* ``transforms.fields.custom_info_to_your_reference`` — carry a field the standard mapping leaves out.
"""
