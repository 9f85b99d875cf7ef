from . import groupmamba
